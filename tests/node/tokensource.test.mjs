// LiveKit's client SDK fetches a token from tokensvc with TokenSource.endpoint.
// Environment: TOKEN_URL (the served /livekit/token), AUTHORIZATION (bearer header value),
// RESULT_FILE (where to write what the SDK returned, for the Python side to verify).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { TokenSource } from 'livekit-client';

test('TokenSource.endpoint gets a token and server URL from tokensvc', async () => {
  const source = TokenSource.endpoint(process.env.TOKEN_URL, {
    headers: { Authorization: process.env.AUTHORIZATION },
  });
  const details = await source.fetch({
    roomName: 'sdk-room',
    participantName: 'SDK User',
    participantIdentity: 'sdk-user',
    participantMetadata: '{"plan":"pro"}',
    participantAttributes: { team: 'blue' },
    agentName: 'support-agent',
    agentMetadata: '{"language":"en"}',
  });
  assert.match(details.serverUrl, /^ws:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(details.participantToken.split('.').length, 3);
  writeFileSync(process.env.RESULT_FILE, JSON.stringify(details));
});

test('TokenSource.endpoint reports a refused request as an error', async () => {
  const source = TokenSource.endpoint(process.env.TOKEN_URL, {
    headers: { Authorization: 'Bearer not-a-jwt' },
  });
  await assert.rejects(
    source.fetch({ roomName: 'x', participantName: 'x', participantIdentity: 'x' }),
    /received 401/,
  );
});
