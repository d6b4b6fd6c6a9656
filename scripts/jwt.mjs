#!/usr/bin/env node
// JWT tooling for the OpenShell gateway's sandbox tokens and for Substrate API bearer tokens.
// Run `node scripts/jwt.mjs --help`. Library: scripts/lib/jwt.mjs.
import { parseFlags, runMain, UsageError } from './lib/cli.mjs';
import {
  API_AUDIENCE,
  DEFAULT_API_SUBJECT,
  SUPPORTED_ALGS,
  ensureKeypair,
  gatewayJwtToml,
  isUuid,
  mintApiToken,
  mintSandboxToken,
  publicJwks,
  renderSecretManifest,
  verifySandboxToken,
} from './lib/jwt.mjs';

const PROG = 'jwt.mjs';

const USAGE = `usage: node scripts/jwt.mjs <command> [options]

Key material for the OpenShell gateway's sandbox tokens ([openshell.gateway.gateway_jwt]) and bearer tokens
for the local Substrate's API. Key directories hold signing.pem (PKCS#8, 0600), public.pem (SPKI) and kid,
the layout of $OPENSHELL_LOCAL_TLS_DIR/jwt/. Key directories must be outside this repository.

commands:
  keygen    generate, or reuse, a keypair and kid; print the [openshell.gateway.gateway_jwt] table
  secret    print a Kubernetes Secret manifest with the key material (for kubectl apply -f -)
  mint      mint a sandbox token with the gateway's exact header and claims
  verify    verify a sandbox token read from stdin; print its claims
  mint-api  mint a bearer token for the local Substrate's API
  jwks      print the public JWKS of a key directory (for the local Substrate's --jwks)

Run 'node scripts/jwt.mjs <command> --help' for a command's options.
Exit status: 0 success, 1 failure (e.g. a token that does not verify), 2 bad command line.
`;

const HELP = {
  keygen: `usage: node scripts/jwt.mjs keygen --dir DIR [--alg EdDSA|ES256|RS256] [--gateway-id ID] [--ttl SECS]

Generate, or reuse if present, a keypair and kid in DIR:
  DIR/signing.pem  private key, PKCS#8 PEM, mode 0600
  DIR/public.pem   public key, SPKI PEM
  DIR/kid          key id, 32 random hex characters
Existing files are never overwritten. DIR is created (mode 0700) if missing. DIR must be outside this
repository: the private key is never written into the repository.

On stdout it prints the gateway's [openshell.gateway.gateway_jwt] table (paths only, never key material) for
an EdDSA key, or the files to configure the local Substrate with for other algorithms. What was created or
reused is reported on stderr.

options:
  --dir DIR          key directory (required), e.g. "$HOME/.local/state/openshell/tls/jwt"
  --alg ALG          key type: EdDSA (Ed25519, default; the only one the gateway uses), ES256 (P-256), RS256 (RSA 3072)
  --gateway-id ID    gateway_id printed in the table (default: openshell)
  --ttl SECS         ttl_secs printed in the table (default: 0, tokens never expire, as the gateway's default)
  -h, --help         show this help
`,
  secret: `usage: node scripts/jwt.mjs secret --dir DIR [--name NAME] [--namespace NS]

Print a Kubernetes Secret manifest (YAML) holding DIR's signing.pem, public.pem and kid, e.g.:
  node scripts/jwt.mjs secret --dir DIR --namespace openshell | kubectl apply -f -
WARNING: this is the one command that prints the PRIVATE KEY (base64 in the Secret's data). It goes to stdout so
it can be piped straight to kubectl; do not redirect it into a file inside the repository.

options:
  --dir DIR          key directory made by keygen (required)
  --name NAME        Secret name (default: openshell-gateway-jwt, what deploy/k8s mounts)
  --namespace NS     metadata.namespace (default: none, kubectl's current namespace)
  -h, --help         show this help
`,
  mint: `usage: node scripts/jwt.mjs mint --dir DIR --sandbox-id UUID [--gateway-id ID] [--ttl SECS]

Mint a sandbox token exactly as the OpenShell gateway does and print it (only the token) on stdout.
  header: {"alg":"EdDSA","kid":<DIR/kid>,"typ":"JWT"}
  claims: sub = spiffe://openshell/sandbox/<UUID>, iss = aud = openshell-gateway:<ID>, sandbox_id = <UUID>,
          iat = now, exp = now + SECS, or 0 (never expires) when SECS is 0

options:
  --dir DIR          key directory with an Ed25519 key (required)
  --sandbox-id UUID  the sandbox id, a lowercase canonical UUID (required)
  --gateway-id ID    gateway id (default: openshell)
  --ttl SECS         lifetime in seconds; 0 = never expires (default: 0)
  -h, --help         show this help
`,
  verify: `usage: node scripts/jwt.mjs verify --dir DIR [--gateway-id ID] < token

Verify a sandbox token read from stdin (never from the command line, so it stays out of shell history and ps):
EdDSA only, kid must match DIR/kid, signature checked with DIR/public.pem, iss and aud must be
openshell-gateway:<ID>, sub/exp required, exp 0 accepted (never expires), otherwise 60 s leeway.
Prints the claims as JSON on stdout and exits 0; otherwise prints the reason on stderr and exits 1.
The token itself is never printed.

options:
  --dir DIR          key directory (required; only public.pem and kid are read)
  --gateway-id ID    expected gateway id (default: openshell)
  -h, --help         show this help
`,
  'mint-api': `usage: node scripts/jwt.mjs mint-api --dir DIR --issuer ISS [--audience AUD] [--alg EdDSA|ES256|RS256]
                                  [--ttl SECS] [--sub SUB]

Mint a bearer token the local Substrate's API accepts when started with --jwt-public-key DIR/public.pem (or
--jwks FILE from 'jwks --dir DIR'), --jwt-issuer ISS and --jwt-audience AUD, and print it (only the token) on
stdout. Send it as 'authorization: Bearer <token>'.
  header: {"alg":<ALG>,"kid":<DIR/kid>,"typ":"JWT"}
  claims: iss, sub, aud, iat, nbf = iat, exp = iat + SECS
Create the key first: node scripts/jwt.mjs keygen --dir DIR [--alg ES256|RS256]

options:
  --dir DIR          key directory (required)
  --issuer ISS       iss claim; must equal the API's configured issuer (required)
  --audience AUD     aud claim (default: ${API_AUDIENCE})
  --alg ALG          expected algorithm (${SUPPORTED_ALGS.join('|')}); default: the key's own; a mismatch is an error
  --ttl SECS         lifetime in seconds, > 0 (default: 3600)
  --sub SUB          sub claim (default: ${DEFAULT_API_SUBJECT})
  -h, --help         show this help
`,
  jwks: `usage: node scripts/jwt.mjs jwks --dir DIR

Print the JWKS ({"keys":[...]}) of DIR's public key with its kid, alg and use=sig, for the local Substrate's
--jwks FILE option or any JWKS endpoint. Public parts only.

options:
  --dir DIR          key directory (required)
  -h, --help         show this help
`,
};

/** @param {string} s @param {string} flag */
function parseSecs(s, flag) {
  if (!/^\d+$/.test(s)) throw new UsageError(`${flag} must be a whole number of seconds, got ${JSON.stringify(s)}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${flag} is too large`);
  return n;
}

/** @param {Record<string, any>} f */
function requireDir(f) {
  if (f.dir === undefined || f.dir === '') throw new UsageError('--dir DIR is required');
  return /** @type {string} */ (f.dir);
}

/** @param {string} alg */
function checkAlg(alg) {
  if (!(/** @type {readonly string[]} */ (SUPPORTED_ALGS)).includes(alg)) throw new UsageError(`--alg must be one of ${SUPPORTED_ALGS.join(', ')}, got ${JSON.stringify(alg)}`);
  return /** @type {'EdDSA'|'ES256'|'RS256'} */ (alg);
}

async function readStdin() {
  if (process.stdin.isTTY) {
    throw new UsageError('verify reads the token from stdin; pipe it in, e.g.: node scripts/jwt.mjs verify --dir DIR < token.jwt');
  }
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

const COMMANDS = {
  async keygen(/** @type {string[]} */ args) {
    const f = parseFlags(args, { string: ['dir', 'alg', 'gateway-id', 'ttl'], boolean: ['help'] });
    if (f.help) return help('keygen');
    const dir = requireDir(f);
    const alg = f.alg === undefined ? undefined : checkAlg(f.alg);
    const ttl = f.ttl === undefined ? 0 : parseSecs(f.ttl, '--ttl');
    const gatewayId = f['gateway-id'] ?? 'openshell';
    if (gatewayId === '' || /\s/.test(gatewayId)) throw new UsageError('--gateway-id must be non-empty without whitespace');
    const r = ensureKeypair(dir, { alg });
    for (const p of r.created) process.stderr.write(`created ${p}\n`);
    for (const p of r.reused) process.stderr.write(`reused ${p}\n`);
    for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
    if (r.alg === 'EdDSA') {
      process.stdout.write(gatewayJwtToml(r.dir, { gatewayId, ttlSecs: ttl }));
    } else {
      process.stdout.write(
        `# ${r.alg} key: not for the gateway's sandbox tokens (EdDSA only). Start the local Substrate's API with\n` +
          `#   --jwt-public-key ${r.publicKeyPath} --jwt-issuer ISS --jwt-audience ${API_AUDIENCE}\n` +
          `# or with --jwks FILE after: node scripts/jwt.mjs jwks --dir ${r.dir} > FILE\n` +
          `# and mint its bearer tokens with: node scripts/jwt.mjs mint-api --dir ${r.dir} --issuer ISS\n`,
      );
    }
  },
  async secret(/** @type {string[]} */ args) {
    const f = parseFlags(args, { string: ['dir', 'name', 'namespace'], boolean: ['help'] });
    if (f.help) return help('secret');
    const dir = requireDir(f);
    process.stdout.write(renderSecretManifest(dir, { name: f.name, namespace: f.namespace }));
  },
  async mint(/** @type {string[]} */ args) {
    const f = parseFlags(args, { string: ['dir', 'sandbox-id', 'gateway-id', 'ttl'], boolean: ['help'] });
    if (f.help) return help('mint');
    const dir = requireDir(f);
    if (f['sandbox-id'] === undefined || f['sandbox-id'] === '') throw new UsageError('--sandbox-id UUID is required');
    if (!isUuid(f['sandbox-id'])) {
      throw new UsageError(`--sandbox-id ${JSON.stringify(f['sandbox-id'])} is not a lowercase canonical UUID (8-4-4-4-12 hex digits, as the gateway formats it)`);
    }
    const ttl = f.ttl === undefined ? 0 : parseSecs(f.ttl, '--ttl');
    const token = await mintSandboxToken(dir, { sandboxId: f['sandbox-id'], gatewayId: f['gateway-id'], ttlSecs: ttl });
    process.stdout.write(`${token}\n`);
  },
  async verify(/** @type {string[]} */ args) {
    const f = parseFlags(args, { string: ['dir', 'gateway-id'], boolean: ['help'], positional: 1 });
    if (f.help) return help('verify');
    if (f._.length > 0) {
      throw new UsageError('verify reads the token from stdin, never from the command line (where it would land in shell history and ps): node scripts/jwt.mjs verify --dir DIR < token.jwt');
    }
    const dir = requireDir(f);
    const input = (await readStdin()).trim();
    if (input === '') throw new UsageError('no token on stdin');
    if (/\s/.test(input)) throw new UsageError('stdin must hold exactly one token (found whitespace inside)');
    const { claims } = await verifySandboxToken(input, dir, { gatewayId: f['gateway-id'] });
    process.stdout.write(`${JSON.stringify(claims, null, 2)}\n`);
  },
  async 'mint-api'(/** @type {string[]} */ args) {
    const f = parseFlags(args, { string: ['dir', 'issuer', 'audience', 'alg', 'ttl', 'sub'], boolean: ['help'] });
    if (f.help) return help('mint-api');
    const dir = requireDir(f);
    if (f.issuer === undefined || f.issuer === '') throw new UsageError('--issuer ISS is required (the API\'s configured issuer)');
    const alg = f.alg === undefined ? undefined : checkAlg(f.alg);
    const ttl = f.ttl === undefined ? 3600 : parseSecs(f.ttl, '--ttl');
    if (ttl === 0) throw new UsageError('--ttl must be positive for API tokens (the API requires exp)');
    if (f.audience === '') throw new UsageError('--audience must be non-empty');
    if (f.sub === '') throw new UsageError('--sub must be non-empty');
    const token = await mintApiToken(dir, { issuer: f.issuer, audience: f.audience, alg, ttlSecs: ttl, sub: f.sub });
    process.stdout.write(`${token}\n`);
  },
  async jwks(/** @type {string[]} */ args) {
    const f = parseFlags(args, { string: ['dir'], boolean: ['help'] });
    if (f.help) return help('jwks');
    const dir = requireDir(f);
    process.stdout.write(`${JSON.stringify(await publicJwks(dir), null, 2)}\n`);
  },
};

/** @param {keyof typeof HELP} cmd */
function help(cmd) {
  process.stdout.write(HELP[cmd]);
  return 0;
}

await runMain(
  PROG,
  async () => {
    const [cmd, ...rest] = process.argv.slice(2);
    if (cmd === undefined) {
      process.stderr.write(USAGE);
      return 2;
    }
    if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
      if (rest[0] !== undefined && rest[0] in HELP) return help(/** @type {keyof typeof HELP} */ (rest[0]));
      process.stdout.write(USAGE);
      return 0;
    }
    if (!Object.hasOwn(COMMANDS, cmd)) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; commands: ${Object.keys(COMMANDS).join(', ')}`);
    return COMMANDS[/** @type {keyof typeof COMMANDS} */ (cmd)](rest);
  },
  process.argv[2] !== undefined && Object.hasOwn(HELP, process.argv[2])
    ? `run 'node scripts/jwt.mjs ${process.argv[2]} --help' for usage`
    : "run 'node scripts/jwt.mjs --help' for usage",
);
