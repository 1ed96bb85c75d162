import { chmod, rm } from 'node:fs/promises';
import net from 'node:net';

/**
 * The sandbox has no network; its only way out is a unix socket bind-mounted into it. Each
 * connection on that socket is piped to the API's loopback port, and nowhere else.
 */
export async function openApiBridge(socketPath: string, apiPort: number): Promise<{ close(): Promise<void> }> {
  const connections = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(apiPort, '127.0.0.1');
    connections.add(inbound).add(outbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      connections.delete(inbound);
      connections.delete(outbound);
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
    inbound.pipe(outbound).pipe(inbound);
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  // The sandbox uid is not the service's: it must be allowed to connect.
  await chmod(socketPath, 0o666);
  return {
    close: async () => {
      for (const socket of connections) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}
