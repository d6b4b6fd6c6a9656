// Addresses: one definition of "loopback" for every listener and client of the project.

/** True for localhost, 127.0.0.0/8 and ::1 (IPv6 with or without brackets). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The Host header values that name a loopback listener on `port` (what a local client sends; a page reached
 * through DNS rebinding sends its own name instead).
 */
export function loopbackHostHeaders(boundHost: string, port: number): Set<string> {
  const h = boundHost.includes(':') && !boundHost.startsWith('[') ? `[${boundHost}]` : boundHost;
  return new Set([`${h}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]);
}
