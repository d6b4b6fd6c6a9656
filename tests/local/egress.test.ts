// Actor egress policies of the local Substrate (src/local/egress.ts) on a real SQLite database: v0.4 validation
// with field paths and messages, defaults, CRUD with uid/version preconditions, and the mapping onto the
// runtime's loopback egress (egressFor).
import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it } from 'vitest';
import * as pb from '../../src/gen/ateapi.js';
import { Code, notFound } from '../../src/common/errors.js';
import { EgressPolicies, isHostnamePattern, validCredentialUri } from '../../src/local/egress.js';
import { expectApiError } from './api-error.js';


const ACTOR = { atespace: 'demo', name: 'a1' };
const md = (over: Partial<pb.ResourceMetadata> = {}): pb.ResourceMetadata => ({ atespace: 'demo', name: 'default', uid: '', version: 0, ...over });
const policy = (rules: Array<Partial<pb.EgressRule>>, meta = md()): pb.EgressPolicy => pb.EgressPolicy.fromPartial({ metadata: meta, rules });

describe('EgressPolicies', () => {
  let e: EgressPolicies;
  let actors: Set<string>;

  beforeEach(() => {
    actors = new Set(['demo/a1', 'demo/a2', 'other/a1']);
    e = new EgressPolicies(new Database(':memory:'), {
      getActor: async (r) => {
        const k = `${r.actor?.atespace}/${r.actor?.name}`;
        if (!actors.has(k)) throw notFound(`Actor ${k} not found`);
        return { metadata: { atespace: r.actor!.atespace, name: r.actor!.name, uid: 'u', version: 1 } };
      },
    });
  });

  const create = (rules: Array<Partial<pb.EgressRule>>, actor = ACTOR, meta = md({ atespace: actor.atespace })) =>
    e.createActorEgressPolicy({ actor, egressPolicy: policy(rules, meta) });

  describe('validation', () => {
    const bad = (rules: Array<Partial<pb.EgressRule>>, message: string | RegExp) => expectApiError(create(rules), Code.INVALID_ARGUMENT, message);

    it('requires the actor, the policy and its metadata; name "default", atespace of the actor', async () => {
      await expectApiError(e.createActorEgressPolicy({ egressPolicy: policy([]) }), Code.INVALID_ARGUMENT, 'actor: Required value');
      await expectApiError(e.createActorEgressPolicy({ actor: ACTOR }), Code.INVALID_ARGUMENT, 'egress_policy: Required value');
      await expectApiError(e.createActorEgressPolicy({ actor: { atespace: '', name: 'a1' }, egressPolicy: policy([]) }), Code.INVALID_ARGUMENT, 'actor.atespace: Required value');
      await expectApiError(create([], ACTOR, md({ name: 'custom' })), Code.INVALID_ARGUMENT, 'egress_policy.metadata.name: Invalid value: "custom": must be "default"');
      await expectApiError(create([], ACTOR, md({ name: '' })), Code.INVALID_ARGUMENT, 'egress_policy.metadata.name: Required value');
      await expectApiError(create([], ACTOR, md({ atespace: 'other' })), Code.INVALID_ARGUMENT, 'egress_policy.metadata.atespace: Invalid value: "other": must match actor.atespace');
      await expectApiError(create([], ACTOR, md({ atespace: '' })), Code.INVALID_ARGUMENT, 'egress_policy.metadata.atespace: Required value');
      await expectApiError(e.createActorEgressPolicy({ actor: ACTOR, egressPolicy: { rules: [] } }), Code.INVALID_ARGUMENT, 'egress_policy.metadata: Required value');
    });

    it('takes exactly one of http, https, tls_passthrough per rule, at most 256 rules', async () => {
      await bad([{}], 'egress_policy.rules[0]: Invalid value: "": must specify one of: `http`, `https`, `tls_passthrough`');
      await bad(
        [{ http: { hostnames: ['a.example'], ports: undefined, effects: undefined }, https: { hostnames: ['a.example'], ports: undefined, effects: undefined } }],
        'egress_policy.rules[0]: Invalid value: "{http, https}": must specify exactly one of: `http`, `https`, `tls_passthrough`',
      );
      const many = Array.from({ length: 257 }, (_, i) => ({ http: { hostnames: [`h${i}.example`], effects: undefined, ports: undefined } }));
      await bad(many, 'egress_policy.rules: Too many: 257: must have at most 256 items');
    });

    it('checks hostname patterns: lowercase RFC 1123, "*" only as the whole leftmost label or alone, no IPs, ports or URLs', async () => {
      for (const ok of ['example.com', '*.example.com', '*', 'localhost', 'xn--bcher-kva.example', 'a-1.b2']) expect(isHostnamePattern(ok), ok).toBe(true);
      for (const no of ['Example.com', 'example.com.', 'a..b', '*example.com', 'a.*.example.com', '**.example.com', '10.0.0.1', '::1', 'example.com:443', 'https://example.com', '-a.example', `${'a'.repeat(64)}.example`, '']) {
        expect(isHostnamePattern(no), no).toBe(false);
      }
      await bad([{ https: { hostnames: ['Example.com'], ports: undefined, effects: undefined } }], 'egress_policy.rules[0].https.hostnames[0]: Invalid value: "Example.com": must be a DNS hostname, optionally with a complete leftmost-label wildcard, or "*"');
      await bad([{ http: { hostnames: [], ports: undefined, effects: undefined } }], 'egress_policy.rules[0].http.hostnames: Required value');
      await bad([{ http: { hostnames: [''], ports: undefined, effects: undefined } }], 'egress_policy.rules[0].http.hostnames[0]: Required value');
      await bad([{ http: { hostnames: ['a.example', 'a.example'], ports: undefined, effects: undefined } }], 'egress_policy.rules[0].http.hostnames[1]: Duplicate value: "a.example"');
      const hosts = Array.from({ length: 257 }, (_, i) => `h${i}.example`);
      await bad([{ http: { hostnames: hosts, ports: undefined, effects: undefined } }], 'egress_policy.rules[0].http.hostnames: Too many: 257: must have at most 256 items');
    });

    it('checks ports: all XOR numbers, 1..65535, at most 16, unique, required for tls_passthrough', async () => {
      await bad([{ tlsPassthrough: { hostnames: ['git.example'], ports: undefined } }], 'egress_policy.rules[0].tls_passthrough.ports: Required value');
      await bad([{ https: { hostnames: ['a.example'], ports: { all: undefined, numbers: [] }, effects: undefined } }], 'egress_policy.rules[0].https.ports: Invalid value: "": must specify one of: `all`, `numbers`');
      await bad([{ https: { hostnames: ['a.example'], ports: { all: {}, numbers: [443] }, effects: undefined } }], 'egress_policy.rules[0].https.ports: Invalid value: "{all, numbers}": must specify exactly one of: `all`, `numbers`');
      await bad([{ http: { hostnames: ['a.example'], ports: { numbers: [0] }, effects: undefined } }], 'egress_policy.rules[0].http.ports.numbers[0]: Invalid value: 0: must be greater than or equal to 1');
      await bad([{ http: { hostnames: ['a.example'], ports: { numbers: [65536] }, effects: undefined } }], 'egress_policy.rules[0].http.ports.numbers[0]: Invalid value: 65536: must be less than or equal to 65535');
      await bad([{ http: { hostnames: ['a.example'], ports: { numbers: [80, 80] }, effects: undefined } }], 'egress_policy.rules[0].http.ports.numbers[1]: Duplicate value: 80');
      const seventeen = Array.from({ length: 17 }, (_, i) => 1000 + i);
      await bad([{ http: { hostnames: ['a.example'], ports: { numbers: seventeen }, effects: undefined } }], 'egress_policy.rules[0].http.ports.numbers: Too many: 17: must have at most 16 items');
    });

    it('refuses two rules that tie on a pattern and a port, within and across protocols; defaults never tie', async () => {
      await bad(
        [
          { https: { hostnames: ['api.example'], ports: undefined, effects: undefined } },
          { tlsPassthrough: { hostnames: ['api.example'], ports: { numbers: [443] } } },
        ],
        'egress_policy.rules[1].tls_passthrough.hostnames[0]: Invalid value: "api.example": ties with egress_policy.rules[0].https.hostnames[0] on port 443',
      );
      await bad(
        [
          { http: { hostnames: ['a.example', '*.example'], ports: { all: {}, numbers: [] }, effects: undefined } },
          { http: { hostnames: ['*.example'], ports: { all: {}, numbers: [] }, effects: undefined } },
        ],
        'egress_policy.rules[1].http.hostnames[0]: Invalid value: "*.example": ties with egress_policy.rules[0].http.hostnames[1] on every port',
      );
      // http defaults to 80 and https to 443: the same name in both does not tie; every-port and a number do not tie.
      await create([
        { http: { hostnames: ['api.example'], ports: undefined, effects: undefined } },
        { https: { hostnames: ['api.example'], ports: undefined, effects: undefined } },
        { tlsPassthrough: { hostnames: ['api.example'], ports: { all: {}, numbers: [] } } },
      ]);
    });

    it('checks replace_headers effects: at least one, at most 16, unique case-insensitive header names, one credential source', async () => {
      const rule = (replaceHeaders: Array<Partial<pb.CredentialHeader>>) => [
        { https: pb.HTTPSRule.fromPartial({ hostnames: ['api.example'], effects: { replaceHeaders } }) },
      ];
      const uri = 'ate-secret://k8s.io/default/ns/secret/key';
      await bad(rule([]), 'egress_policy.rules[0].https.effects: Required value: at least one effect must be specified');
      await bad(
        rule([{ header: 'Authorization', credentialUri: uri }, { header: 'authorization', credentialUri: uri }]),
        'egress_policy.rules[0].https.effects.replace_headers[1].header: Duplicate value: "authorization"',
      );
      await bad(rule([{ header: 'Bad Header', credentialUri: uri }]), 'egress_policy.rules[0].https.effects.replace_headers[0].header: Invalid value: "Bad Header": must be an HTTP header name');
      await bad(rule([{ header: '', credentialUri: uri }]), 'egress_policy.rules[0].https.effects.replace_headers[0].header: Required value');
      await bad(rule([{ header: 'X-A', prefix: 'Bearer\n', credentialUri: uri }]), 'egress_policy.rules[0].https.effects.replace_headers[0].prefix: Invalid value: "Bearer\\n": must be a valid HTTP field value prefix');
      await bad(rule([{ header: 'X-A' }]), 'egress_policy.rules[0].https.effects.replace_headers[0]: Invalid value: "": must specify one of: `credential_uri`, `actor_jwt`');
      await bad(
        rule([{ header: 'X-A', credentialUri: uri, actorJwt: { audiences: ['a'], expirationSeconds: 600 } }]),
        'egress_policy.rules[0].https.effects.replace_headers[0]: Invalid value: "{credential_uri, actor_jwt}": must specify exactly one of: `credential_uri`, `actor_jwt`',
      );
      const many = Array.from({ length: 17 }, (_, i) => ({ header: `X-H${i}`, credentialUri: uri }));
      await bad(rule(many), 'egress_policy.rules[0].https.effects.replace_headers: Too many: 17: must have at most 16 items');
    });

    it('never puts a credential URI into an error', async () => {
      const secretish = 'ate-secret://k8s.io/default/ns/topsecret-name?token=hunter2';
      expect(validCredentialUri(secretish)).toBe(false);
      expect(validCredentialUri('ate-secret://k8s.io/default/ns/secret/key')).toBe(true);
      for (const no of ['ate-secret://k8s.io/', 'ate-secret://k8s.io/one', 'https://k8s.io/a/b', 'ate-secret://k8s.io/a//b', 'ate-secret://k8s.io/a/b/', 'ate-secret://u@k8s.io/a/b', 'ate-secret://k8s.io/a/%2e']) {
        expect(validCredentialUri(no), no).toBe(false);
      }
      const err = await expectApiError(
        create([{ https: pb.HTTPSRule.fromPartial({ hostnames: ['api.example'], effects: { replaceHeaders: [{ header: 'Authorization', credentialUri: secretish }] } }) }]),
        Code.INVALID_ARGUMENT,
        'egress_policy.rules[0].https.effects.replace_headers[0].credential_uri: Invalid value: must be ate-secret://<provider-class>/<provider-name>/<provider-specific-tail>',
      );
      expect(err.message).not.toContain('topsecret');
      expect(err.message).not.toContain('hunter2');
    });

    it('checks actor_jwt sources: audiences 1..16 of 1..512 characters, expiration 300..3600 seconds', async () => {
      const jwt = (actorJwt: Partial<pb.ActorJWTSource>) => [
        { http: pb.HTTPRule.fromPartial({ hostnames: ['api.example'], effects: { replaceHeaders: [{ header: 'Authorization', prefix: 'Bearer ', actorJwt }] } }) },
      ];
      const p = 'egress_policy.rules[0].http.effects.replace_headers[0].actor_jwt';
      await bad(jwt({ audiences: [], expirationSeconds: 600 }), `${p}.audiences: Required value`);
      await bad(jwt({ audiences: ['a', 'a'], expirationSeconds: 600 }), `${p}.audiences[1]: Duplicate value: "a"`);
      await bad(jwt({ audiences: ['x'.repeat(513)], expirationSeconds: 600 }), `${p}.audiences[0]: Too long: may not be more than 512 characters`);
      await bad(jwt({ audiences: Array.from({ length: 17 }, (_, i) => `a${i}`), expirationSeconds: 600 }), `${p}.audiences: Too many: 17: must have at most 16 items`);
      await bad(jwt({ audiences: ['a'], expirationSeconds: 0 }), `${p}.expiration_seconds: Required value`);
      await bad(jwt({ audiences: ['a'], expirationSeconds: 299 }), `${p}.expiration_seconds: Invalid value: 299: must be greater than or equal to 300`);
      await bad(jwt({ audiences: ['a'], expirationSeconds: 3601 }), `${p}.expiration_seconds: Invalid value: 3601: must be less than or equal to 3600`);
      await create(jwt({ audiences: ['https://relying.example'], expirationSeconds: 3600 }));
    });
  });

  describe('CRUD', () => {
    it('creates with defaults and server metadata, once per actor, only for an existing actor', async () => {
      const created = await create([
        { http: { hostnames: ['localhost'], ports: undefined, effects: undefined } },
        { https: { hostnames: ['api.example'], ports: undefined, effects: undefined } },
      ], ACTOR, md({ uid: 'mine', version: 9 }));
      expect(created.metadata).toMatchObject({ atespace: 'demo', name: 'default', version: 1 });
      expect(created.metadata!.uid).not.toBe('mine');
      expect(created.rules[0]!.http!.ports!.numbers).toEqual([80]);
      expect(created.rules[1]!.https!.ports!.numbers).toEqual([443]);
      expect(await e.getActorEgressPolicy({ actor: ACTOR })).toEqual(created);
      await expectApiError(create([]), Code.ALREADY_EXISTS, 'EgressPolicy already exists');
      // Another actor, and the same actor name in another atespace, have their own policies.
      await create([], { atespace: 'demo', name: 'a2' });
      await create([], { atespace: 'other', name: 'a1' });
      await expectApiError(create([], { atespace: 'demo', name: 'ghost' }), Code.FAILED_PRECONDITION, 'parent Actor does not exist');
      await expectApiError(e.getActorEgressPolicy({ actor: { atespace: 'demo', name: 'ghost' } }), Code.NOT_FOUND, 'EgressPolicy for actor demo/ghost not found');
    });

    it('updates as a whole replace under uid and version preconditions', async () => {
      const created = await create([{ http: { hostnames: ['localhost'], ports: { numbers: [8080] }, effects: undefined } }]);
      const next = (meta: Partial<pb.ResourceMetadata>, rules: Array<Partial<pb.EgressRule>>) =>
        e.updateActorEgressPolicy({ actor: ACTOR, egressPolicy: policy(rules, md(meta)) });
      const rules = [{ https: { hostnames: ['api.example'], ports: undefined, effects: undefined } }];
      await expectApiError(next({}, rules), Code.INVALID_ARGUMENT, 'EgressPolicy UID and version are required');
      await expectApiError(next({ uid: created.metadata!.uid }, rules), Code.INVALID_ARGUMENT, 'EgressPolicy UID and version are required');
      await expectApiError(next({ uid: 'ffffffff-ffff-ffff-ffff-ffffffffffff', version: 1 }, rules), Code.ABORTED, 'EgressPolicy UID conflict');
      await expectApiError(next({ uid: created.metadata!.uid, version: 5 }, rules), Code.ABORTED, 'EgressPolicy version conflict');
      await expectApiError(next({ uid: created.metadata!.uid, version: 1 }, [{}]), Code.INVALID_ARGUMENT, /^egress_policy\.rules\[0\]: /);
      const updated = await next({ uid: created.metadata!.uid, version: 1 }, rules);
      expect(updated.metadata).toMatchObject({ uid: created.metadata!.uid, version: 2, name: 'default', atespace: 'demo' });
      expect(updated.metadata!.createTime).toEqual(created.metadata!.createTime);
      expect(updated.rules).toEqual([{ https: { hostnames: ['api.example'], ports: { all: undefined, numbers: [443] }, effects: undefined } }]);
      expect(await e.getActorEgressPolicy({ actor: ACTOR })).toEqual(updated);
      // The previous version is stale now.
      await expectApiError(next({ uid: created.metadata!.uid, version: 1 }, rules), Code.ABORTED, 'EgressPolicy version conflict');
      await expectApiError(
        e.updateActorEgressPolicy({ actor: { atespace: 'demo', name: 'a2' }, egressPolicy: policy(rules, md({ uid: created.metadata!.uid, version: 2 })) }),
        Code.NOT_FOUND,
        'EgressPolicy not found',
      );
    });

    it('deletes under optional DeleteOptions and returns the deleted policy', async () => {
      const created = await create([{ http: { hostnames: ['localhost'], ports: { numbers: [8080] }, effects: undefined } }]);
      await expectApiError(e.deleteActorEgressPolicy({ actor: ACTOR, options: { uid: 'ffffffff-ffff-ffff-ffff-ffffffffffff', version: 0 } }), Code.ABORTED, 'EgressPolicy UID conflict');
      await expectApiError(e.deleteActorEgressPolicy({ actor: ACTOR, options: { uid: '', version: 3 } }), Code.ABORTED, 'EgressPolicy version conflict');
      expect(await e.deleteActorEgressPolicy({ actor: ACTOR, options: { uid: created.metadata!.uid, version: 1 } })).toEqual(created);
      await expectApiError(e.deleteActorEgressPolicy({ actor: ACTOR }), Code.NOT_FOUND, 'EgressPolicy not found');
      expect(await e.egressFor('demo', 'a1')).toEqual([]);
      await create([]);
      expect(e.deleteForActor('demo', 'a1')).toBe(true);
      await expectApiError(e.getActorEgressPolicy({ actor: ACTOR }), Code.NOT_FOUND);
    });
  });

  describe('egressFor: enforcement on one machine', () => {
    it('no policy: no egress', async () => {
      expect(await e.egressFor('demo', 'a1')).toEqual([]);
    });

    it('maps localhost rules to loopback ports (numbers, or the http/https defaults), whatever the protocol', async () => {
      await create([
        { http: { hostnames: ['localhost', 'api.example'], ports: { numbers: [9090, 8080] }, effects: undefined } },
        { https: { hostnames: ['localhost'], ports: undefined, effects: undefined } },
        { tlsPassthrough: { hostnames: ['localhost'], ports: { numbers: [5432] } } },
        { http: { hostnames: ['*'], ports: { numbers: [3000] }, effects: undefined } },
      ]);
      expect(await e.egressFor('demo', 'a1')).toEqual([443, 5432, 8080, 9090].map((port) => ({ host: '127.0.0.1', port })));
      const plan = await e.egressPlan('demo', 'a1');
      expect(plan.notes).toContain('rules[0].http: api.example: not routed; the local Substrate reaches only localhost (host loopback ports), nothing leaves this machine');
      expect(plan.notes.some((n) => n.startsWith('rules[3].http: *: not routed'))).toBe(true);
      // Another actor's policy does not leak into this one's egress.
      expect(await e.egressFor('demo', 'a2')).toEqual([]);
    });

    it('maps nothing for other hostnames, localhost on every port, or rules that inject credentials', async () => {
      await create([
        { https: { hostnames: ['api.example', '*.googleapis.com'], ports: undefined, effects: undefined } },
        { http: { hostnames: ['localhost'], ports: { all: {}, numbers: [] }, effects: undefined } },
        { http: pb.HTTPRule.fromPartial({ hostnames: ['localhost'], ports: { numbers: [7070] }, effects: { replaceHeaders: [{ header: 'Authorization', prefix: 'Bearer ', actorJwt: { audiences: ['x'], expirationSeconds: 600 } }] } }) },
      ]);
      expect(await e.egressFor('demo', 'a1')).toEqual([]);
      const plan = await e.egressPlan('demo', 'a1');
      expect(plan.notes).toContain('rules[1].http: localhost on every port not mapped: the local Substrate opens loopback ports by number only');
      expect(plan.notes).toContain(
        'rules[2].http: localhost not mapped: the rule replaces request headers with credentials, which the local Substrate cannot inject (no MITM egress gateway)',
      );
    });
  });
});
