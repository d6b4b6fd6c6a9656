// Hub forwarder of the local Substrate's gVisor runtime. Plain JS, no dependencies.
//
// Runs inside the runtime's hub network namespace:
//   ip netns exec <hub> node forwarder.mjs <control.sock> [<egress.sock> <hub-ip>]
// and listens on a Unix socket (mode 0600). Socket files are not tied to a netns, so the host reaches
// sandboxes through it without any address in the root netns.
//
// Protocol on the control socket (one line per connection):
//   CONNECT <ip>:<port>\n         -> "OK\n" then raw bytes both ways, or "ERR <message>\n" and close.
//   EGRESS-SET <sandbox-ip> <p1,p2,..|->\n
//                                 -> "OK\n". Allows that sandbox to reach <hub-ip>:<p> (relayed to the host
//                                    through <egress.sock> as "EGRESS <sandbox-ip> <p>\n"); "-" revokes all.
//   DROP <sandbox-ip>\n            -> "OK <n>\n": closes every piped connection to that address (its sandbox is gone).
//   RESET <sandbox-ip>\n           -> "OK <n>\n": resets (TCP RST) every piped connection to that address, so
//                                    the sandbox closes them before it is checkpointed (a connection frozen
//                                    open in a checkpoint left the restored workload unable to answer).
//   PING\n                        -> "OK <pid>\n"
// The process exits when its stdin closes (the runtime that started it is gone) or on SIGTERM.
import net from 'node:net';
import fs from 'node:fs';

const [controlPath, egressPath, hubIp] = process.argv.slice(2);
if (!controlPath) {
  process.stderr.write('usage: forwarder.mjs <control.sock> [<egress.sock> <hub-ip>]\n');
  process.exit(2);
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const CONNECT_TIMEOUT_MS = 10_000;
const log = (msg) => process.stderr.write(`${new Date().toISOString()} forwarder ${msg}\n`);

function validIp(ip) {
  const m = IPV4.exec(ip);
  // Only addresses inside the namespaces the runtime creates (10.0.0.0/8) are ever dialled.
  return !!m && m.slice(1).every((o) => Number(o) <= 255) && m[1] === '10';
}
function validPort(p) {
  return /^\d{1,5}$/.test(p) && Number(p) >= 1 && Number(p) <= 65535;
}

/** Reads one '\n'-terminated line (max 512 bytes), then hands the socket back paused with any extra bytes. */
function readLine(sock, cb) {
  let buf = Buffer.alloc(0);
  const onData = (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    const i = buf.indexOf(10);
    if (i < 0) {
      if (buf.length > 512) {
        cleanup();
        sock.end('ERR request line too long\n');
      }
      return;
    }
    cleanup();
    sock.pause();
    const rest = buf.subarray(i + 1);
    if (rest.length) sock.unshift(rest);
    cb(buf.subarray(0, i).toString('utf8').replace(/\r$/, ''));
  };
  const onEnd = () => {
    cleanup();
    sock.destroy();
    cb(null);
  };
  const cleanup = () => {
    sock.off('data', onData);
    sock.off('end', onEnd);
  };
  sock.on('data', onData);
  sock.on('end', onEnd);
}

function pipeBoth(a, b) {
  a.pipe(b);
  b.pipe(a);
  const kill = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', kill);
  b.on('error', kill);
  a.on('close', () => b.end());
  b.on('close', () => a.end());
}

// ---- egress: per-port TCP listeners on the hub address, allowed per sandbox source address ----
/** port -> Set(sandbox ip) */
const allowed = new Map();
/** port -> net.Server */
const listeners = new Map();

function syncListeners() {
  for (const [port, ips] of allowed) {
    if (ips.size > 0 && !listeners.has(port)) {
      const srv = net.createServer((sock) => onEgress(sock, port));
      srv.on('error', (e) => log(`egress listener ${hubIp}:${port} failed: ${e.message}`));
      srv.listen({ host: hubIp, port, exclusive: true });
      listeners.set(port, srv);
    }
  }
  for (const [port, srv] of listeners) {
    const ips = allowed.get(port);
    if (!ips || ips.size === 0) {
      srv.close();
      listeners.delete(port);
      allowed.delete(port);
    }
  }
}

function onEgress(sock, port) {
  const src = (sock.remoteAddress || '').replace(/^::ffff:/, '');
  if (!allowed.get(port)?.has(src) || !egressPath) {
    sock.resetAndDestroy();
    return;
  }
  sock.pause();
  const up = net.connect(egressPath);
  up.on('error', () => sock.resetAndDestroy());
  up.once('connect', () => {
    up.write(`EGRESS ${src} ${port}\n`);
    readLine(up, (line) => {
      if (line !== 'OK') {
        up.destroy();
        sock.resetAndDestroy();
        return;
      }
      pipeBoth(sock, up);
      sock.resume();
      up.resume();
    });
  });
}

function setEgress(ip, portsSpec) {
  for (const ips of allowed.values()) ips.delete(ip);
  if (portsSpec !== '-') {
    for (const p of portsSpec.split(',')) {
      const port = Number(p);
      if (!allowed.has(port)) allowed.set(port, new Set());
      allowed.get(port).add(ip);
    }
  }
  syncListeners();
}

/** sandbox ip -> Set of upstream sockets piped through CONNECT */
const active = new Map();

// ---- control socket ----
function onControl(sock) {
  sock.on('error', () => {});
  readLine(sock, (line) => {
    if (line === null) return;
    const parts = line.split(' ');
    if (parts[0] === 'PING' && parts.length === 1) {
      sock.end(`OK ${process.pid}\n`);
      return;
    }
    if ((parts[0] === 'DROP' || parts[0] === 'RESET') && parts.length === 2) {
      const set = active.get(parts[1]);
      const n = set ? set.size : 0;
      if (set) for (const s of set) parts[0] === 'RESET' ? s.resetAndDestroy() : s.destroy();
      active.delete(parts[1]);
      sock.end(`OK ${n}\n`);
      return;
    }
    if (parts[0] === 'EGRESS-SET' && parts.length === 3) {
      const [, ip, spec] = parts;
      if (!validIp(ip) || !(spec === '-' || spec.split(',').every(validPort))) {
        sock.end('ERR bad EGRESS-SET arguments\n');
        return;
      }
      if (!hubIp || !egressPath) {
        sock.end('ERR forwarder started without an egress socket\n');
        return;
      }
      setEgress(ip, spec);
      sock.end('OK\n');
      return;
    }
    if (parts[0] === 'CONNECT' && parts.length === 2) {
      const idx = parts[1].lastIndexOf(':');
      const ip = parts[1].slice(0, idx);
      const port = parts[1].slice(idx + 1);
      if (idx < 0 || !validIp(ip) || !validPort(port)) {
        sock.end('ERR expected CONNECT <10.x.y.z>:<port>\n');
        return;
      }
      const up = net.connect({ host: ip, port: Number(port) });
      const timer = setTimeout(() => up.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })), CONNECT_TIMEOUT_MS);
      const onUpErr = (e) => {
        clearTimeout(timer);
        if (!sock.destroyed) sock.end(`ERR ${e.code || 'EIO'} ${String(e.message).replace(/\n/g, ' ')}\n`);
      };
      up.once('error', onUpErr);
      const abandon = () => up.destroy();
      sock.once('close', abandon);
      up.once('connect', () => {
        clearTimeout(timer);
        up.off('error', onUpErr);
        sock.off('close', abandon);
        if (sock.destroyed) {
          up.destroy();
          return;
        }
        if (!active.has(ip)) active.set(ip, new Set());
        active.get(ip).add(up);
        up.once('close', () => {
          active.get(ip)?.delete(up);
          if (active.get(ip)?.size === 0) active.delete(ip);
        });
        sock.write('OK\n');
        pipeBoth(sock, up);
        sock.resume();
      });
      return;
    }
    sock.end('ERR unknown command\n');
  });
}

try {
  fs.unlinkSync(controlPath);
} catch {}
process.umask(0o177);
const server = net.createServer(onControl);
server.on('error', (e) => {
  log(`cannot listen on ${controlPath}: ${e.message}`);
  process.exit(1);
});
server.listen(controlPath, () => {
  fs.chmodSync(controlPath, 0o600);
  process.stdout.write(`READY ${process.pid}\n`);
});

const stop = () => {
  try {
    fs.unlinkSync(controlPath);
  } catch {}
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
