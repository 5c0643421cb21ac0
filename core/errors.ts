// Base class for every named error in Cell. Callers match on the class (instanceof) or on `name`
// when an error crossed the wire; never on the message text.
export class CellError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}
