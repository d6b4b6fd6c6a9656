// The local Substrate's gRPC edge on the released v0.4 wire: every ateapi.Control RPC (src/gen/ateapi.ts) bound
// to the ControlApi method of the same name, ateapi.WorkerService answering UNIMPLEMENTED, and, on the
// instance's Unix socket only, our LocalAdmin service (src/local/admin.ts).
//
// Per call, in upstream's interceptor order (shared/reference/substrate-v0.4.md §5.2, §6):
//  1. authentication: nothing on the instance's Unix socket (mode 0600 in a private directory: reaching it is the
//     authentication); on TCP a client certificate verified against `tls.clientCaPath` (principal: its first URI
//     SAN), else `authorization: Bearer <JWT>` through src/local/auth.ts. Messages as upstream's apiauthn:
//     UNAUTHENTICATED "missing bearer token" / "invalid bearer token" (the reason goes to the debug log only).
//  2. strict decoding (upstream's RejectUnknownFieldsUnaryInterceptor): the raw request bytes are walked before they
//     are decoded; a field number the server's proto does not know, or a known number with a wire type that does
//     not fit its declaration (protobuf-go keeps both as unknown fields), is INVALID_ARGUMENT
//     `<path>: Invalid value: unknown field with protobuf tag <N>`, path `request` for the top level, else the
//     field path of the message holding it (`actor.metadata`, `egress_policy.rules[0].https`), one error per
//     message (its first unknown tag), several as a Kubernetes aggregate `[a, b]`. Bytes that are not a valid
//     message are INTERNAL "grpc: error unmarshalling request: ..." as grpc-go answers.
//     The table of known fields comes from the descriptors protoc compiled (ts-proto `outputSchema=true`,
//     scripts/gen.sh), so it cannot drift from the generated decoders.
//  3. the handler; coded errors keep code and message, anything else is INTERNAL "internal server error: ..."
//     (src/common/errors.ts toServiceError); a message is clipped to MAX_DETAILS_BYTES (it may quote a request
//     value of up to 4 MiB). Every answer carries the trailer `x-server-elapsed-us`.
//
// Listening rules (as the June server): plaintext only on a Unix socket or a loopback address, TLS anywhere
// else; a TCP listener needs a bearer-JWT verifier or client-certificate auth, except on loopback with the
// explicit test/dev flag `allowUnauthenticatedLoopback`.
import { isUtf8 } from 'node:buffer';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as ateapi from '../gen/ateapi.js';
import * as localAdmin from '../gen/local_admin.js';
import { ApiError, internal, toServiceError, unauthenticated, Code } from '../common/errors.js';
import { logger } from '../common/log.js';
import { isLoopbackHost } from '../common/net.js';
import { NOT_PROVIDED_LOCALLY, type ControlApi } from './api.js';
import type { Verifier } from './auth.js';
import { localAdminMethods, type AdminRegistries } from './admin.js';

const log = logger('local.server');

// ---------------------------------------------------------------------------------------------------------
// Strict decoding

/** The parts of a FileDescriptorProto the walker reads (ts-proto's `protoMetadata`). */
export interface ProtoFileMeta {
  fileDescriptor: {
    package: string;
    messageType: DescMessage[];
    service: Array<{ name: string; method: Array<{ name: string; inputType: string }> }>;
  };
  dependencies?: ProtoFileMeta[];
}

interface DescMessage {
  name: string;
  field: Array<{ name: string; number: number; label: number; type: number; typeName: string }>;
  nestedType: DescMessage[];
  options?: { mapEntry?: boolean } | undefined;
}

interface FieldInfo {
  name: string;
  number: number;
  /** Declaration order: protobuf-go ranges a message's fields in it, so errors are reported in it. */
  order: number;
  /** Accepted wire types, a bit per type. */
  wire: number;
  /** Full name of the message type (a map field's entry type for maps). */
  message?: string;
  /** proto3 `string`: must be valid UTF-8. */
  string: boolean;
  repeated: boolean;
  map: boolean;
  /** For a packed repeated scalar: the wire type of one element. */
  packedElement?: number;
}

interface MessageInfo {
  fields: Map<number, FieldInfo>;
  mapEntry: boolean;
}

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_SGROUP = 3;
const WT_EGROUP = 4;
const WT_I32 = 5;
const MAX_DEPTH = 100;

/** FieldDescriptorProto.Type → the wire type of one value. */
function wireTypeOf(type: number): number {
  switch (type) {
    case 1: // double
    case 6: // fixed64
    case 16: // sfixed64
      return WT_I64;
    case 2: // float
    case 7: // fixed32
    case 15: // sfixed32
      return WT_I32;
    case 9: // string
    case 11: // message
    case 12: // bytes
      return WT_LEN;
    case 10: // group
      return WT_SGROUP;
    default: // int32/64, uint32/64, sint32/64, bool, enum
      return WT_VARINT;
  }
}

const MALFORMED = 'grpc: error unmarshalling request: proto: cannot parse invalid wire-format data';
const BAD_UTF8 = 'grpc: error unmarshalling request: string field contains invalid UTF-8';

class Cursor {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  /** A varint (at most 10 bytes, as protobuf-go); values past 2^53 lose precision, which no caller needs. */
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw internal(MALFORMED);
      const b = this.buf[this.pos++]!;
      if (i === 9 && b > 1) throw internal(MALFORMED);
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
    throw internal(MALFORMED);
  }

  skip(n: number): void {
    if (n > this.end - this.pos) throw internal(MALFORMED);
    this.pos += n;
  }

  /** A tag: field number and wire type. */
  tag(): { num: number; wt: number } {
    const t = this.varint();
    const num = Math.floor(t / 8);
    if (num < 1 || num > 0x1fffffff) throw internal(MALFORMED);
    return { num, wt: t % 8 };
  }

  /** Skips one value of wire type `wt`; for LEN returns the payload's bounds. */
  value(wt: number, num: number, depth: number): { start: number; end: number } {
    const start = this.pos;
    switch (wt) {
      case WT_VARINT:
        this.varint();
        return { start, end: this.pos };
      case WT_I64:
        this.skip(8);
        return { start, end: this.pos };
      case WT_I32:
        this.skip(4);
        return { start, end: this.pos };
      case WT_LEN: {
        const len = this.varint();
        const s = this.pos;
        this.skip(len);
        return { start: s, end: this.pos };
      }
      case WT_SGROUP: {
        if (depth > MAX_DEPTH) throw internal(MALFORMED);
        for (;;) {
          const t = this.tag();
          if (t.wt === WT_EGROUP) {
            if (t.num !== num) throw internal(MALFORMED);
            return { start, end: this.pos };
          }
          this.value(t.wt, t.num, depth + 1);
        }
      }
      default: // an END_GROUP without its start, or wire types 6 and 7
        throw internal(MALFORMED);
    }
  }
}

/**
 * Known fields of every message of the served protos, and the request type of every method, read from the
 * compiled descriptors. `check(method path, bytes)` rejects what upstream's RejectUnknownFields rejects.
 */
export class WireSchema {
  private readonly messages = new Map<string, MessageInfo>();
  private readonly inputs = new Map<string, string>();

  constructor(files: ProtoFileMeta[]) {
    const seen = new Set<ProtoFileMeta>();
    const visit = (f: ProtoFileMeta) => {
      if (seen.has(f)) return;
      seen.add(f);
      for (const d of f.dependencies ?? []) visit(d);
      const fd = f.fileDescriptor;
      const prefix = fd.package ? `.${fd.package}` : '';
      for (const m of fd.messageType) this.addMessage(`${prefix}.${m.name}`, m);
      for (const s of fd.service ?? []) {
        for (const m of s.method) this.inputs.set(`/${fd.package ? `${fd.package}.` : ''}${s.name}/${m.name}`, m.inputType);
      }
    };
    for (const f of files) visit(f);
  }

  private addMessage(fullName: string, m: DescMessage): void {
    for (const n of m.nestedType) this.addMessage(`${fullName}.${n.name}`, n);
    const fields = new Map<number, FieldInfo>();
    m.field.forEach((f, order) => {
      const repeated = f.label === 3;
      const one = wireTypeOf(f.type);
      const packable = repeated && one !== WT_LEN && one !== WT_SGROUP;
      const isMessage = f.type === 11 || f.type === 10;
      const entry = isMessage ? m.nestedType.find((n) => `${fullName}.${n.name}` === f.typeName && n.options?.mapEntry) : undefined;
      fields.set(f.number, {
        name: f.name,
        number: f.number,
        order,
        wire: (1 << one) | (packable ? 1 << WT_LEN : 0),
        message: isMessage ? f.typeName : undefined,
        string: f.type === 9,
        repeated,
        map: !!entry,
        packedElement: packable ? one : undefined,
      });
    });
    this.messages.set(fullName, { fields, mapEntry: !!m.options?.mapEntry });
  }

  /** The request type of a method path ('/ateapi.Control/GetActor'). */
  inputOf(path: string): string | undefined {
    return this.inputs.get(path);
  }

  /**
   * Throws INVALID_ARGUMENT for unknown fields (all of them, as one aggregate) and INTERNAL for bytes that are
   * not a valid message of `typeName`.
   */
  check(typeName: string, buf: Uint8Array): void {
    const errs = new Map<string, string>();
    this.walk(typeName, buf, 0, buf.length, undefined, errs, 0);
    if (errs.size === 0) return;
    const msgs = [...new Set(errs.values())];
    throw new ApiError(Code.INVALID_ARGUMENT, msgs.length === 1 ? msgs[0]! : `[${msgs.join(', ')}]`);
  }

  private walk(typeName: string, buf: Uint8Array, start: number, end: number, path: string | undefined, errs: Map<string, string>, depth: number): void {
    if (depth > MAX_DEPTH) throw internal(MALFORMED);
    const info = this.messages.get(typeName);
    if (!info) throw internal(`no descriptor for ${typeName}`);
    const c = new Cursor(buf, start, end);
    let unknown: number | undefined;
    const kids: Array<{ f: FieldInfo; start: number; end: number; seq: number }> = [];
    while (c.pos < end) {
      const { num, wt } = c.tag();
      const v = c.value(wt, num, depth + 1);
      const f = info.fields.get(num);
      if (!f || !(f.wire & (1 << wt))) {
        // protobuf-go drops unknown fields of a map entry; anywhere else they are kept, and rejected.
        if (!info.mapEntry && unknown === undefined) unknown = num;
        continue;
      }
      if (wt !== WT_LEN) continue;
      if (f.message) kids.push({ f, start: v.start, end: v.end, seq: kids.length });
      else if (f.string) {
        if (!isUtf8(buf.subarray(v.start, v.end))) throw internal(BAD_UTF8);
      } else if (f.packedElement !== undefined) {
        const p = new Cursor(buf, v.start, v.end);
        while (p.pos < v.end) p.value(f.packedElement, num, depth + 1);
      }
    }
    if (unknown !== undefined) {
      const at = path ?? 'request';
      if (!errs.has(at)) errs.set(at, `${at}: Invalid value: unknown field with protobuf tag ${unknown}`);
    }
    kids.sort((a, b) => a.f.order - b.f.order || a.seq - b.seq);
    const index = new Map<number, number>();
    for (const k of kids) {
      const base = path ? `${path}.${k.f.name}` : k.f.name;
      if (k.f.map) {
        this.walkMapEntry(k.f.message!, buf, k.start, k.end, base, errs, depth + 1);
        continue;
      }
      let at = base;
      if (k.f.repeated) {
        const i = index.get(k.f.number) ?? 0;
        index.set(k.f.number, i + 1);
        at = `${base}[${i}]`;
      }
      this.walk(k.f.message!, buf, k.start, k.end, at, errs, depth + 1);
    }
  }

  /** A map entry: its key names the path of a message value (`labels[key]`). */
  private walkMapEntry(typeName: string, buf: Uint8Array, start: number, end: number, base: string, errs: Map<string, string>, depth: number): void {
    // Unknown fields of the entry itself are dropped (as protobuf-go does); UTF-8 is checked by walk().
    this.walk(typeName, buf, start, end, base, new Map(), depth);
    const info = this.messages.get(typeName)!;
    const keyField = info.fields.get(1);
    const valueField = info.fields.get(2);
    let key = '';
    let value: { start: number; end: number } | undefined;
    const c = new Cursor(buf, start, end);
    while (c.pos < end) {
      const { num, wt } = c.tag();
      const v = c.value(wt, num, depth + 1);
      if (num === 1 && keyField && keyField.wire & (1 << wt)) {
        key = keyField.string ? Buffer.from(buf.subarray(v.start, v.end)).toString('utf8') : String(new Cursor(buf, v.start, v.end).varint());
      } else if (num === 2 && valueField?.message && wt === WT_LEN) {
        value = v;
      }
    }
    // A decoder assigning `obj[key] = value` would set the object's prototype for this key: it is no valid key of
    // any map in these APIs (label keys, asset names, architectures), so it is refused before anything decodes it.
    if (key === '__proto__') {
      throw new ApiError(Code.INVALID_ARGUMENT, `${base}: Invalid value: "__proto__": not a permitted map key`);
    }
    if (value && valueField?.message) this.walk(valueField.message, buf, value.start, value.end, `${base}[${key}]`, errs, depth + 1);
  }
}

let schema: WireSchema | undefined;

/** The schema of everything this server serves (ateapi.Control, ateapi.WorkerService, LocalAdmin). */
export function servedSchema(): WireSchema {
  schema ??= new WireSchema([ateapi.protoMetadata as unknown as ProtoFileMeta, localAdmin.protoMetadata as unknown as ProtoFileMeta]);
  return schema;
}

// ---------------------------------------------------------------------------------------------------------
// Authentication

export interface ServeTls {
  certPath: string;
  keyPath: string;
  /**
   * PEM CA bundle for client certificates (upstream's --pod-identity-ca-certs). A client that presents a
   * certificate verified against it is authenticated by it (principal: the certificate's first URI SAN); one
   * without a certificate (or with one that does not verify) must send a bearer token.
   */
  clientCaPath?: string;
}

export interface ServeSpec {
  /** 'unix:/abs/path' or 'host:port' (port 0: any free port). */
  address: string;
  tls?: ServeTls;
  /** Bearer-JWT verifier (src/local/auth.ts); required on TCP unless client certificates or the flag below. */
  verifier?: Verifier;
  /**
   * TEST/DEV ONLY: serve a loopback TCP address without any authentication. Refused for any other address.
   * Without it, a TCP listener with neither a verifier nor `tls.clientCaPath` does not start.
   */
  allowUnauthenticatedLoopback?: boolean;
  /** The admin service (WorkerPools, SandboxConfigs): Unix socket only, refused on TCP. */
  admin?: AdminRegistries;
}

export interface ServedApi {
  /** grpc-js target: 'unix:/abs/path' or 'host:port' with the bound port. */
  address: string;
  tls: boolean;
  close(): Promise<void>;
}

type Authenticate = (call: grpc.ServerUnaryCall<Buffer, unknown>) => Promise<string>;

/** The first URI SAN of a peer certificate (`URI:spiffe://...`; Node quotes values with special characters). */
export function firstUriSan(cert: PeerCertificate | undefined): string | undefined {
  const san = cert?.subjectaltname;
  if (!san) return undefined;
  const re = /(?:^|, )URI:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  const m = re.exec(san);
  if (!m) return undefined;
  let v = m[1]!;
  if (v.startsWith('"')) {
    try {
      v = JSON.parse(v) as string;
    } catch {
      return undefined;
    }
  }
  return v || undefined;
}

function tcpAuthenticator(verifier: Verifier | undefined, mtls: boolean, anonymous: boolean): Authenticate {
  return async (call) => {
    if (mtls) {
      // grpc-js reports a peer certificate only when the TLS socket verified it against the configured CA.
      const id = firstUriSan(call.getAuthContext().sslPeerCertificate);
      if (id) return id;
    }
    if (verifier) {
      const v = call.metadata.get('authorization')[0];
      try {
        await verifier.verify(typeof v === 'string' ? v : undefined);
      } catch (e) {
        if (e instanceof ApiError && e.code === Code.UNAUTHENTICATED && e.message.startsWith('invalid bearer token')) {
          // The reason (jose's code and message, never the token) stays in the debug log, as upstream logs it.
          log.debug('bearer token refused', { reason: e.message });
          throw unauthenticated('invalid bearer token');
        }
        throw e;
      }
      return 'jwt';
    }
    if (anonymous) return 'anonymous-loopback';
    throw unauthenticated('missing bearer token');
  };
}

// ---------------------------------------------------------------------------------------------------------
// Binding

/** An RPC as bound here: what to do with the decoded request. */
type Impl = (req: unknown) => Promise<unknown>;

/** The raw service definition: same paths and response encoding, requests kept as the received bytes. */
function rawDefinition(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [key, m] of Object.entries(def)) out[key] = { ...m, requestDeserialize: (b: Buffer) => b };
  return out;
}

function handlerFor(
  rpc: string,
  def: grpc.MethodDefinition<unknown, unknown>,
  inputType: string,
  authenticate: Authenticate,
  impl: Impl,
): grpc.handleUnaryCall<Buffer, unknown> {
  const strict = servedSchema();
  return (call, cb) => {
    const started = process.hrtime.bigint();
    const trailer = () => {
      const md = new grpc.Metadata();
      md.set('x-server-elapsed-us', String((process.hrtime.bigint() - started) / 1000n));
      return md;
    };
    void (async () => {
      try {
        await authenticate(call);
        const raw = call.request;
        strict.check(inputType, raw);
        const req = def.requestDeserialize(raw);
        const res = await impl(req);
        cb(null, res, trailer());
      } catch (e) {
        const se = toServiceError(e);
        if (se.code === Code.INTERNAL) log.warn('rpc failed', { method: rpc, error: clipDetails(se.details) });
        cb({ code: se.code, details: clipDetails(se.details), metadata: trailer() } as grpc.ServiceError);
      }
    })();
  };
}

/** The most of an error message sent back (UTF-8 bytes, before grpc-message's percent-encoding). */
export const MAX_DETAILS_BYTES = 8 * 1024;

/**
 * An error message as it may travel in grpc-message: at most MAX_DETAILS_BYTES. Validation messages quote the
 * offending value, and a value can be as large as a request (4 MiB); sent whole, it would be a trailer larger
 * than a client accepts, which stalls the connection (the call never ends, and neither do the others sharing it).
 */
export function clipDetails(details: string): string {
  const b = Buffer.from(details, 'utf8');
  if (b.length <= MAX_DETAILS_BYTES) return details;
  const note = ` ... (${b.length} bytes, truncated)`;
  // Cut on a character boundary: a cut multi-byte sequence decodes to U+FFFD, which is dropped.
  return b.subarray(0, MAX_DETAILS_BYTES - note.length).toString('utf8').replace(/\uFFFD+$/, '') + note;
}

function unimplemented(message: string): Impl {
  return () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, message));
}

/** ControlService methods the ControlApi does not have: exactly those NOT_PROVIDED_LOCALLY names. */
type NotInApi = Exclude<keyof typeof ateapi.ControlService, keyof ControlApi>;
type Unprovided =
  | 'mintActorJwt'
  | 'mintActorCertificate'
  | 'createWorker'
  | 'updateWorker'
  | 'deleteWorker'
  | 'getGlobalAccessPolicy'
  | 'createGlobalAccessPolicy'
  | 'updateGlobalAccessPolicy'
  | 'getAtespaceAccessPolicy'
  | 'createAtespaceAccessPolicy'
  | 'updateAtespaceAccessPolicy'
  | 'deleteAtespaceAccessPolicy';
// Compile-time drift check: a new Control RPC must be added to ControlApi or to NOT_PROVIDED_LOCALLY.
const coverage: [NotInApi] extends [Unprovided] ? ([Unprovided] extends [NotInApi] ? true : never) : never = true;
void coverage;

export const WORKER_SERVICE_MESSAGE = "served only to an atelet; the local Substrate's workers are its own";

function rpcName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Control: every RPC to the ControlApi method of the same name, or UNIMPLEMENTED with why. */
function controlImpls(api: ControlApi): Record<string, Impl> {
  const out: Record<string, Impl> = {};
  const methods = api as unknown as Record<string, unknown>;
  for (const [key, m] of Object.entries(ateapi.ControlService)) {
    const name = rpcName(m.path);
    if (Object.hasOwn(NOT_PROVIDED_LOCALLY, name)) {
      out[key] = unimplemented(NOT_PROVIDED_LOCALLY[name]!);
      continue;
    }
    const fn = methods[key];
    if (typeof fn !== 'function') throw new Error(`ControlApi has no method ${key} for ${m.path}`);
    out[key] = (req) => (fn as (r: unknown) => Promise<unknown>).call(api, req);
  }
  return out;
}

function addService(
  server: grpc.Server,
  def: grpc.ServiceDefinition,
  impls: Record<string, Impl>,
  authenticate: Authenticate,
): void {
  const strict = servedSchema();
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [key, m] of Object.entries(def)) {
    const inputType = strict.inputOf(m.path);
    if (!inputType) throw new Error(`no descriptor for ${m.path}`);
    handlers[key] = handlerFor(rpcName(m.path), m, inputType, authenticate, impls[key]!);
  }
  server.addService(rawDefinition(def), handlers);
}

// ---------------------------------------------------------------------------------------------------------
// Listening

/** Splits 'host:port' (IPv6 in brackets). */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(addr);
  if (!m) throw new Error(`"${addr}" is not host:port or unix:/absolute/path`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`"${addr}": port ${port} is out of range`);
  return { host: m[1]!, port };
}

/** TLS that asks for a client certificate and verifies one when given (Go's VerifyClientCertIfGiven). */
class VerifyClientCertIfGiven extends grpc.ServerCredentials {
  constructor(ca: Buffer, cert: Buffer, key: Buffer) {
    super({ requestCert: true, rejectUnauthorized: false }, { ca, cert, key });
  }
  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function credentialsOf(tls: ServeTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const cert = readFileSync(tls.certPath);
  const key = readFileSync(tls.keyPath);
  if (tls.clientCaPath) return new VerifyClientCertIfGiven(readFileSync(tls.clientCaPath), cert, key);
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
}

export async function serveControlV4(api: ControlApi, spec: ServeSpec): Promise<ServedApi> {
  let bindAddr: string;
  let unixPath: string | undefined;
  let authenticate: Authenticate;
  if (spec.address.startsWith('unix:')) {
    unixPath = spec.address.slice('unix:'.length).replace(/^\/\//, '');
    if (!unixPath.startsWith('/')) throw new Error(`listen address ${spec.address}: a Unix socket path must be absolute`);
    const dir = dirname(unixPath);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if ((statSync(dir).mode & 0o022) !== 0) {
      throw new Error(`listen address ${spec.address}: ${dir} is writable by other users; the API socket needs a private directory (chmod go-w ${dir})`);
    }
    if (existsSync(unixPath)) {
      // Only a stale socket is replaced (the instance lock keeps a live one of this state directory safe).
      if (!lstatSync(unixPath).isSocket()) throw new Error(`listen address ${spec.address}: ${unixPath} exists and is not a socket; refusing to replace it`);
      unlinkSync(unixPath);
    }
    bindAddr = `unix:${unixPath}`;
    // The socket is 0600 in a directory others cannot write: reaching it is the owner's authentication.
    authenticate = async () => 'unix-socket-owner';
  } else {
    const { host } = splitHostPort(spec.address);
    const loopback = isLoopbackHost(host);
    if (!loopback && !spec.tls) {
      throw new Error(
        `listen address ${spec.address} is not loopback: the API then requires TLS (--tls-cert, --tls-key) and authentication (bearer JWTs or client certificates)`,
      );
    }
    if (spec.admin) {
      throw new Error(`listen address ${spec.address}: the admin service (WorkerPools, SandboxConfigs) is served only on the instance's Unix socket, never on TCP`);
    }
    if (spec.allowUnauthenticatedLoopback && !loopback) {
      throw new Error(`listen address ${spec.address}: allowUnauthenticatedLoopback applies to loopback addresses only`);
    }
    const mtls = !!spec.tls?.clientCaPath;
    if (!spec.verifier && !mtls && !spec.allowUnauthenticatedLoopback) {
      throw new Error(
        `listen address ${spec.address}: a TCP listener, even on loopback, requires authentication (bearer JWTs: --jwt-public-key or --jwks with --jwt-issuer and --jwt-audience; or client certificates: --tls-client-ca); local tools without a token use the instance's Unix socket`,
      );
    }
    bindAddr = spec.address;
    authenticate = tcpAuthenticator(spec.verifier, mtls, !!spec.allowUnauthenticatedLoopback && !spec.verifier);
  }

  const server = new grpc.Server();
  addService(server, ateapi.ControlService, controlImpls(api), authenticate);
  const workerImpls: Record<string, Impl> = {};
  for (const key of Object.keys(ateapi.WorkerServiceService)) workerImpls[key] = unimplemented(WORKER_SERVICE_MESSAGE);
  addService(server, ateapi.WorkerServiceService, workerImpls, authenticate);
  if (spec.admin) {
    if (!unixPath) throw new Error('the admin service is served only on the Unix socket');
    addService(server, localAdmin.LocalAdminService, localAdminMethods(spec.admin) as Record<string, Impl>, authenticate);
  }

  const creds = credentialsOf(spec.tls);
  // A Unix socket is private from its creation (umask: no group or other bits), then made 0600.
  const umask = unixPath ? process.umask(0o077) : undefined;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => server.bindAsync(bindAddr, creds, (e, p) => (e ? reject(e) : resolve(p))));
  } catch (e) {
    server.forceShutdown();
    throw e;
  } finally {
    if (umask !== undefined) process.umask(umask);
  }
  let address = bindAddr;
  if (unixPath) chmodSync(unixPath, 0o600);
  else address = `${splitHostPort(spec.address).host}:${port}`;
  log.info('serving ateapi v0.4', { address, tls: !!spec.tls, auth: unixPath ? 'unix-socket' : spec.verifier ? 'jwt' : spec.tls?.clientCaPath ? 'mtls' : 'none (loopback, test/dev)', admin: !!spec.admin });
  return {
    address,
    tls: !!spec.tls,
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 3000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }).then(() => {
        if (unixPath && existsSync(unixPath) && lstatSync(unixPath).isSocket()) unlinkSync(unixPath);
      }),
  };
}
