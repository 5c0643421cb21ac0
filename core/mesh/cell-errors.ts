// A cell's own error classes on the caller's side. A cell throws `new NotFoundError(...)`; the name
// and message cross the wire and, unless the caller knows the class, arrive as a RemoteError
// carrying the name. A caller that imports the cell's classes hands them to `mesh.remote(cell,
// { errors: { NotFoundError } })` and gets them back as those classes (`instanceof` holds), per
// cell: two cells may each have a NotFoundError of their own.
import { RemoteError } from '../synapse/index.ts'

/** A class a failure can be rebuilt as: constructible from a message, named by its literal `errorName`. */
export type CellErrorClass = (new (message: string, options?: { cause?: unknown }) => Error) & { readonly errorName: string }

/** At most this many classes per remote: a cell's error vocabulary, not a registry of everything. */
export const MAX_CELL_ERROR_CLASSES = 64

/** The `errors` option of `mesh.remote`: the cell module's exports by name, or a list of classes. */
export type CellErrors = Readonly<Record<string, CellErrorClass>> | readonly CellErrorClass[]

/** Classes keyed by their literal `errorName` (never the constructor's name, which bundlers rename). */
export function cellErrorClasses (errors: CellErrors | undefined): Map<string, CellErrorClass> {
  const out = new Map<string, CellErrorClass>()
  if (errors === undefined) return out
  const list = Array.isArray(errors) ? errors as readonly CellErrorClass[] : Object.values(errors as Record<string, CellErrorClass>)
  for (const c of list) {
    if (typeof c !== 'function' || typeof c.errorName !== 'string' || c.errorName === '') {
      throw new TypeError('errors: every entry must be an error class with a static errorName')
    }
    if (out.size >= MAX_CELL_ERROR_CLASSES) throw new RangeError(`errors: at most ${MAX_CELL_ERROR_CLASSES} classes per cell`)
    out.set(c.errorName, c)
  }
  return out
}

/** `err` rebuilt as the cell's own class when it is a RemoteError of a name in `classes`; else `err` itself. */
export function rebuildCellError (err: unknown, classes: ReadonlyMap<string, CellErrorClass>): unknown {
  if (!(err instanceof RemoteError)) return err
  const errorClass = classes.get(err.remoteName)
  if (errorClass === undefined) return err
  try {
    const rebuilt = new errorClass(err.message, { cause: err })
    // Classes whose constructor formats the message still report the cell's text and name.
    rebuilt.message = err.message
    rebuilt.name = err.remoteName
    return rebuilt
  } catch {
    return err
  }
}
