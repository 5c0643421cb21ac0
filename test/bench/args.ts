// Command-line flags of the bench scripts: `--name N` (a positive whole number) and `--switch`.
const args = process.argv.slice(2)

/** The value of `--name`, or `fallback`; anything but a positive whole number is refused by name. */
export function positiveFlag (name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`)
  const n = i >= 0 ? Number(args[i + 1]) : fallback
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a positive whole number`)
  return n
}

/** Whether `--name` was given. */
export function hasFlag (name: string): boolean {
  return args.includes(`--${name}`)
}

/** The word after `--name`, if given. */
export function stringFlag (name: string): string | undefined {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
