// Verifies a Sigstore bundle with sigstore-js (@sigstore/verify), trusting
// exactly one public key and requiring no transparency log, CT log or
// timestamp authority (thresholds 0): key-signed DSSE verification.
//
// usage: node verify_bundle.js BUNDLE.sigstore.json PUBLIC.pem
// exit 0 and "OK <keyid>" when the bundle verifies; exit 1 with the error otherwise.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function main() {
  const [bundlePath, pemPath] = process.argv.slice(2);
  if (!bundlePath || !pemPath) {
    console.error('usage: node verify_bundle.js BUNDLE PUBLIC.pem');
    process.exit(2);
  }
  const publicKey = crypto.createPublicKey(fs.readFileSync(pemPath));
  // The keyid the bundle hint must carry: hex sha256 of the SPKI DER, computed here independently.
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const keyid = crypto.createHash('sha256').update(spki).digest('hex');

  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const root = TrustedRoot.fromJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  });
  const keys = (hint) => {
    if (hint !== keyid) {
      throw new Error(`untrusted key hint ${hint} (trusted: ${keyid})`);
    }
    return { publicKey, validFor: () => true };
  };
  const verifier = new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    tsaThreshold: 0,
  });
  verifier.verify(toSignedEntity(bundle));
  const payload = JSON.parse(Buffer.from(bundle.content.dsseEnvelope.payload).toString('utf8'));
  if (payload._type !== 'https://in-toto.io/Statement/v1' || payload.predicateType !== 'https://slsa.dev/provenance/v1') {
    throw new Error(`unexpected statement types ${payload._type} ${payload.predicateType}`);
  }
  console.log(`OK ${keyid}`);
}

try {
  main();
} catch (e) {
  console.error(`FAILED: ${e && e.code ? e.code + ': ' : ''}${e && e.message ? e.message : e}`);
  process.exit(1);
}
