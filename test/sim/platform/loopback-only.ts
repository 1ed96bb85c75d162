import net from 'node:net';

/**
 * Preloaded (`node --import`) into each simulated function instance. The Functions Framework
 * listens on every interface (`server.listen(port)`) and has no option for the host; in the cloud
 * only Google's front end reaches the container, here nothing but loopback may. A listen on a
 * bare port is given the loopback host; nothing else changes.
 */
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(this: net.Server, ...args: unknown[]) {
  const port = args[0];
  if ((typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))) && typeof args[1] !== 'string') {
    return (listen as (...a: unknown[]) => net.Server).call(this, args[0], '127.0.0.1', ...args.slice(1));
  }
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof net.Server.prototype.listen;
