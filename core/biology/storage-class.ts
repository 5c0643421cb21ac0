// Storage classes a node offers, as advertised in its node record's roles (`storage-zfs`,
// `storage-dir`). A cell's `[cell.storage] class` is met only by a node that offers it: `zfs` needs a
// ZFS pool, `dir` a plain directory, and `default` any driver (the node picks its best one). A cell
// that asks for `zfs` is never placed on a node without a pool, never silently given a directory.
export const STORAGE_ROLE_PREFIX = 'storage-'

/** The role a node advertises for a driver it runs (e.g. `storage-zfs`). */
export function storageRole (driver: string): string {
  return `${STORAGE_ROLE_PREFIX}${driver}`
}

/** The drivers a node record's roles advertise, e.g. ['zfs', 'dir']. */
export function storageDriversOfRoles (roles: readonly string[]): string[] {
  return roles.filter(r => r.startsWith(STORAGE_ROLE_PREFIX)).map(r => r.slice(STORAGE_ROLE_PREFIX.length))
}

/** Does a node with these roles offer the storage class `cls`? */
export function offersStorageClass (roles: readonly string[], cls: string): boolean {
  const drivers = storageDriversOfRoles(roles)
  return cls === 'default' ? drivers.length > 0 : drivers.includes(cls)
}

/** The driver a node with `drivers` (best first) uses for class `cls`, or undefined when it offers none. */
export function driverForClass (drivers: readonly string[], cls: string): string | undefined {
  return cls === 'default' ? drivers[0] : drivers.find(d => d === cls)
}
