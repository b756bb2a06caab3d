// The certified `oidc-provider` configured like FranceConnect v2 (citizens) and ProConnect
// (agents), for Guichet's interoperability test (tests/api/interop.rs). Loopback only.
//
//   node server.mjs [--port N] [--alg ES256|RS256] [--rp http://127.0.0.1] [--enc-jwk JSON]
//
// With `--enc-jwk` (the relying party's public EC key, as in its `/.guichet/jwks.json`), the
// citizens' client gets its ID tokens and userinfo encrypted to that key like FranceConnect+
// does (JWE, ECDH-ES with A256GCM, around the signed JWT).
//
// Prints `ready <issuer>` on stdout once it accepts connections. Sign-in is headless: the
// interaction page finishes at once with the client's test account and the asked acr, and
// grants are created automatically, so a plain HTTP client can walk the whole flow.
import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { interactionPolicy } from 'oidc-provider';

const MOUNT = '/api/v2';
const ACR_VALUES = ['eidas1', 'eidas2', 'eidas3'];

// Must match tests/api/oidc_mock.rs (CLIENT_ID, CLIENT_SECRET) and tests/api/interop.rs.
const CITIZEN_CLIENT = 'guichet-test-client';
const AGENT_CLIENT = 'guichet-test-agent-client';
const CLIENT_SECRET = 'test-client-secret-0123456789';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    alg: { type: 'string', default: 'ES256' },
    rp: { type: 'string', default: 'http://127.0.0.1' },
    'enc-jwk': { type: 'string' },
  },
});
const encJwk = args['enc-jwk'] ? JSON.parse(args['enc-jwk']) : null;
if (!['ES256', 'RS256'].includes(args.alg)) {
  throw new Error(`--alg must be ES256 or RS256, not ${args.alg}`);
}

// FranceConnect's identity pivot, the sandbox's reference identity.
const CITIZEN_CLAIMS = {
  given_name: 'Angela Claire Louise',
  family_name: 'DUBOIS',
  preferred_username: 'MERCIER',
  birthdate: '1962-08-24',
  gender: 'female',
  birthplace: '75107',
  birthcountry: '99100',
  email: 'wossewodda-3728@yopmail.com',
};
// ProConnect's claims for an agent of the commune (matches the role rule of the test).
const AGENT_CLAIMS = {
  given_name: 'Camille',
  usual_name: 'LEROY',
  email: 'camille.leroy@mairie.example.fr',
  uid: 'agent-42',
  siret: '21750001600019',
  idp_id: 'interop-idp',
};
const ACCOUNTS = { [CITIZEN_CLIENT]: 'citizen-angela', [AGENT_CLIENT]: 'agent-camille' };
const CLAIMS_OF = { 'citizen-angela': CITIZEN_CLAIMS, 'agent-camille': AGENT_CLAIMS };

// One scope per claim plus FranceConnect's aliases, as in the partner documentation, and
// ProConnect's agent claims.
const SCOPE_CLAIMS = {
  acr: null,
  auth_time: null,
  given_name: ['given_name'],
  family_name: ['family_name'],
  birthdate: ['birthdate'],
  gender: ['gender'],
  birthplace: ['birthplace'],
  birthcountry: ['birthcountry'],
  preferred_username: ['preferred_username'],
  email: ['email'],
  profile: ['given_name', 'family_name', 'birthdate', 'gender', 'preferred_username'],
  birth: ['birthplace', 'birthcountry'],
  identite_pivot: ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry'],
  usual_name: ['usual_name'],
  uid: ['uid'],
  siret: ['siret'],
  idp_id: ['idp_id'],
};

/** A fresh private signing key as a JWK; nothing is committed, each run draws its own. */
function privateJwk(type, alg) {
  const options = type === 'ec' ? { namedCurve: 'P-256' } : { modulusLength: 2048 };
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `interop-${alg.toLowerCase()}`, alg, use: 'sig' };
}

function client(clientId, callbackPath) {
  return {
    client_id: clientId,
    client_secret: CLIENT_SECRET,
    token_endpoint_auth_method: 'client_secret_post',
    redirect_uris: [`${args.rp}${callbackPath}`],
    post_logout_redirect_uris: [`${args.rp}/.guichet/oidc/logout-callback`],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    subject_type: 'pairwise',
    id_token_signed_response_alg: args.alg,
    userinfo_signed_response_alg: args.alg,
  };
}

/** FranceConnect+'s encryption of ID tokens and userinfo to the relying party's key. */
function encrypting(c) {
  if (!encJwk) return c;
  return {
    ...c,
    jwks: { keys: [encJwk] },
    id_token_encrypted_response_alg: 'ECDH-ES',
    id_token_encrypted_response_enc: 'A256GCM',
    userinfo_encrypted_response_alg: 'ECDH-ES',
    userinfo_encrypted_response_enc: 'A256GCM',
  };
}

function configuration() {
  const pairwiseSalt = randomBytes(32);
  return {
    clients: [
      encrypting(client(CITIZEN_CLIENT, '/.guichet/oidc/callback')),
      client(AGENT_CLIENT, '/.guichet/oidc/agent/callback'),
    ],
    jwks: { keys: [privateJwk('ec', 'ES256'), privateJwk('rsa', 'RS256')] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    acrValues: ACR_VALUES,
    subjectTypes: ['pairwise'],
    scopes: ['openid'],
    claims: SCOPE_CLAIMS,
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256', 'RS256'],
      userinfoSigningAlgValues: ['ES256', 'RS256'],
      idTokenEncryptionAlgValues: ['ECDH-ES'],
      idTokenEncryptionEncValues: ['A256GCM'],
      userinfoEncryptionAlgValues: ['ECDH-ES'],
      userinfoEncryptionEncValues: ['A256GCM'],
    },
    features: {
      encryption: { enabled: Boolean(encJwk) },
      devInteractions: { enabled: false },
      jwtUserinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    routes: { authorization: '/authorize', userinfo: '/userinfo', jwks: '/jwks' },
    interactions: { policy: loginPolicy(), url: (ctx, interaction) => `${MOUNT}/interaction/${interaction.uid}` },
    // Pairwise like FranceConnect: 64 hex characters, stable per (person, service provider).
    pairwiseIdentifier: (ctx, accountId, { sectorIdentifier }) =>
      createHmac('sha256', pairwiseSalt).update(`${sectorIdentifier}\n${accountId}`).digest('hex'),
    findAccount: (ctx, accountId) => ({
      accountId,
      claims: () => ({ sub: accountId, ...CLAIMS_OF[accountId] }),
    }),
    // Consent is given once and for all: the test walks the flow without any form.
    loadExistingGrant: autoGrant,
    ttl: {
      AccessToken: 60,
      AuthorizationCode: 30,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  };
}

async function autoGrant(ctx) {
  const { client: c, session, provider } = ctx.oidc;
  const existing = session.grantIdFor(c.clientId);
  if (existing) {
    const found = await provider.Grant.find(existing);
    if (found) return found;
  }
  const grant = new provider.Grant({ clientId: c.clientId, accountId: session.accountId });
  grant.addOIDCScope(['openid', ...Object.keys(SCOPE_CLAIMS).filter((s) => SCOPE_CLAIMS[s])].join(' '));
  grant.addOIDCClaims(Object.keys({ ...CITIZEN_CLAIMS, ...AGENT_CLAIMS }));
  await grant.save();
  return grant;
}

/** The strongest level the client asked that the provider knows, eidas1 by default. */
function grantedAcr(params) {
  const asked = String(params.acr_values ?? '').split(' ').filter((v) => ACR_VALUES.includes(v));
  return asked.sort().at(-1) ?? 'eidas1';
}

/**
 * The default prompts, plus FranceConnect's step-up: a provider session below the asked
 * eIDAS level signs in again instead of answering with the lower level.
 */
function loginPolicy() {
  const { Check, base } = interactionPolicy;
  const policy = base();
  const stepUp = new Check('acr_too_low', 'a higher eIDAS level is asked', ({ oidc }) => {
    if (!oidc.session.accountId) return Check.NO_NEED_TO_PROMPT;
    const asked = ACR_VALUES.indexOf(grantedAcr(oidc.params));
    return asked > ACR_VALUES.indexOf(oidc.session.acr) ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT;
  });
  policy.get('login').checks.add(stepUp);
  return policy;
}

/** Headless "login page": finishes the interaction with the client's test account. */
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const accountId = ACCOUNTS[details.params.client_id];
  if (details.prompt.name !== 'login' || !accountId) {
    const result = { error: 'access_denied', error_description: 'unexpected interaction' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  const login = { accountId, acr: grantedAcr(details.params), amr: ['pwd'] };
  return provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
}

function notFound(res) {
  res.statusCode = 404;
  res.end('not found');
}

const server = createServer();
server.listen(Number(args.port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}${MOUNT}`;
  const provider = new Provider(issuer, configuration());
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (!req.url.startsWith(MOUNT)) return notFound(res);
    if (req.url.startsWith(`${MOUNT}/interaction/`)) {
      return interaction(provider, req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
    }
    // Mounted like express does it: oidc-provider derives its mount path from originalUrl.
    req.originalUrl = req.url;
    req.url = req.url.slice(MOUNT.length) || '/';
    return callback(req, res);
  });
  process.stdout.write(`ready ${issuer}\n`);
});
