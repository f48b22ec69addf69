// Local read-only HTTP endpoint with a router's counters and tables as JSON.
// Operators curl it; the lab tests read drop counters from it.
import { createServer, type Server } from 'node:http';
import { parseEndpoint } from './cidr.js';
import { UserError } from './user-error.js';

export async function startStatusServer(endpoint: string, status: () => unknown): Promise<Server> {
  const { host, port } = parseEndpoint(endpoint);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/status' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /status\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status(), null, 1) + '\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new UserError(`status endpoint ${endpoint}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return server;
}
