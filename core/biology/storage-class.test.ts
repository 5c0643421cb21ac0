import { describe, it, expect } from 'vitest'
import { storageRole, storageDriversOfRoles, offersStorageClass, driverForClass } from './storage-class.ts'
import { NODE_ROLES_PATTERN } from '../fleet/records.ts'

describe('storage classes from node roles', () => {
  it('a zfs class is met only by a node advertising a pool; default by any driver', () => {
    const zfsNode = ['full', 'sandbox-strict', storageRole('zfs'), storageRole('dir')]
    const dirNode = ['full', 'sandbox-strict', storageRole('dir')]
    const none = ['full', 'sandbox-strict']
    expect(offersStorageClass(zfsNode, 'zfs')).toBe(true)
    expect(offersStorageClass(dirNode, 'zfs')).toBe(false)
    expect(offersStorageClass(dirNode, 'default')).toBe(true)
    expect(offersStorageClass(none, 'default')).toBe(false)
    expect(offersStorageClass(zfsNode, 'ssd')).toBe(false)
    expect(storageDriversOfRoles(zfsNode)).toEqual(['zfs', 'dir'])
    for (const r of zfsNode) expect(r).toMatch(NODE_ROLES_PATTERN)
  })

  it('picks the node\'s best driver for default and the named one otherwise', () => {
    expect(driverForClass(['zfs', 'dir'], 'default')).toBe('zfs')
    expect(driverForClass(['dir'], 'default')).toBe('dir')
    expect(driverForClass(['dir'], 'zfs')).toBeUndefined()
    expect(driverForClass(['zfs', 'dir'], 'dir')).toBe('dir')
  })
})
