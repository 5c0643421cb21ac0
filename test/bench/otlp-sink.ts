// The bench's OTLP/HTTP sink, in its own process as a collector would be: counts the spans it is
// sent (occurrences of "spanId" in the JSON bodies) and tells its parent its URL, and the count when asked.
import { createServer } from 'node:http'

const MARK = Buffer.from('"spanId"')
let spans = 0
const server = createServer((req, res) => {
  req.on('data', (c: Buffer) => { for (let i = c.indexOf(MARK); i >= 0; i = c.indexOf(MARK, i + MARK.length)) spans++ })
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }).end('{}') })
})
server.listen(0, '127.0.0.1', () => {
  process.send?.({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces` })
})
process.on('message', () => { process.send?.({ spans }) })
process.on('disconnect', () => { server.closeAllConnections(); server.close(); process.exit(0) })
