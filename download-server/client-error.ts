// Answers requests Node's HTTP parser rejects (oversized headers, garbage, timeouts) with the
// same one-line refusal script the app uses, and closes gracefully. Node's default handler
// destroys the socket at once: with the client's oversized header still unread, the kernel
// answers with a RST, and the client may see "connection reset" instead of the 431 it was sent.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

const LINGER_MS = 2000;

function answer(status: number, reason: string, message: string): string {
  const body = `echo 'tinyvine: ${message}' >&2; exit 3\n`;
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/x-shellscript\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

function responseFor(code: string | undefined): string | null {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return answer(431, 'Request Header Fields Too Large', 'request headers too large');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return answer(408, 'Request Timeout', 'request took too long');
    case 'ECONNRESET':
    case 'EPIPE':
      return null;
    default:
      return answer(400, 'Bad Request', 'malformed HTTP request');
  }
}

/** Installs the graceful parser-error answer on `server`. */
export function answerClientErrors(server: Server): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const response = socket.writable ? responseFor(err.code) : null;
    if (!response) {
      socket.destroy();
      return;
    }
    // Send, half-close, and read (discard) what the client is still sending until it closes,
    // bounded so a client that never stops cannot hold the socket.
    socket.end(response);
    socket.on('data', () => {});
    socket.on('error', () => socket.destroy());
    socket.resume();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  });
}
