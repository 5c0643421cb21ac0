// `cell up` ends its banner with a line to paste into other shells (the multi-process check, with a
// restart keeping it valid, is in test/integration/cli-answers.test.ts).
import { describe, expect, it } from 'vitest'
import { bootstrapLine } from './up.ts'

const id = '12D3KooWGr5LWUVjDK3uXxrfzMDFLGJ4AJw8wFef199MncvtjFAG'

describe('cell up export line', () => {
  it('names a plain TCP address, one other machines can reach when there is one', () => {
    expect(bootstrapLine([`/ip4/127.0.0.1/tcp/4001/p2p/${id}`, `/ip4/127.0.0.1/tcp/4002/ws/p2p/${id}`])).toBe(`export CELL_BOOTSTRAP=/ip4/127.0.0.1/tcp/4001/p2p/${id}`)
    expect(bootstrapLine([`/ip4/127.0.0.1/tcp/4001/p2p/${id}`, `/ip4/10.1.2.3/tcp/4001/p2p/${id}`])).toBe(`export CELL_BOOTSTRAP=/ip4/10.1.2.3/tcp/4001/p2p/${id}`)
    expect(bootstrapLine([`/ip4/127.0.0.1/udp/4001/webrtc-direct/certhash/uEi/p2p/${id}`])).toBeUndefined()
  })
})
