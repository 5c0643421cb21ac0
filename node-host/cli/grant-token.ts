// The grant-token codec lives in core/identity (browsers import tokens too); re-exported here for
// the CLI commands (`cell grant` prints tokens, `cell up --grant` reads them).
export {
  encodeGrantToken, decodeGrantToken, MalformedGrantTokenError, GRANT_TOKEN_PREFIX, MAX_GRANT_TOKEN_LENGTH
} from '../../core/identity/grant-token.ts'
