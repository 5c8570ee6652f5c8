// Join a LiveKit room with a token from tokensvc, publish the microphone, list who else is
// there and how many bytes of their audio arrived, and say why tokensvc removed us (its notice
// on topic `tokensvc`). `window.call` holds the same for tests.
import { Room, RoomEvent, Track, TokenSource } from './node_modules/livekit-client/dist/livekit-client.esm.mjs';

const $ = (id) => document.getElementById(id);
const settings = new URLSearchParams(location.hash.slice(1));  // never sent to any server
$('service').value = settings.get('service') || `${location.protocol}//${location.hostname}:8000`;
$('tenant').value = settings.get('tenant') || '';
$('room').value = settings.get('room') || $('room').value;
$('name').value = settings.get('name') || `guest-${Math.random().toString(36).slice(2, 7)}`;
$('fetcher').value = settings.get('fetcher') || 'tokensource';

window.call = { state: 'idle', error: null, identity: null, others: {}, notice: null };

// What tokensvc says before it removes a participant or ends a room: a quota, a suspension.
function explain(notice) {
  if (notice.code === 'quota_exceeded') {
    return `removed: the tenant's quota ${notice.quota} (${notice.limit}) is reached`;
  }
  if (notice.code === 'tenant_suspended') return 'removed: this tenant is suspended';
  return `removed: ${notice.code}`;
}

function show(state, error = null) {
  window.call.state = state;
  window.call.error = error;
  $('status').textContent = error ? `${state}: ${error}` : state;
}

// The request body is LiveKit's token-endpoint standard; the answer carries both spellings.
function request() {
  const name = $('name').value.trim();
  return { roomName: $('room').value.trim(), participantName: name, participantIdentity: name };
}

async function tokenFromTokenSource(url, headers) {
  const source = TokenSource.endpoint(url, { headers });
  const details = await source.fetch(request());
  return { serverUrl: details.serverUrl, token: details.participantToken };
}

async function tokenFromFetch(url, headers) {
  const { roomName, participantName, participantIdentity } = request();
  const answer = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ room_name: roomName, participant_name: participantName,
                           participant_identity: participantIdentity }),
  });
  const body = await answer.json();
  if (!answer.ok) throw new Error(`${answer.status} ${body.code}: ${body.error}`);
  return { serverUrl: body.livekit_url, token: body.token };
}

async function audioBytes(publication) {
  const receiver = publication.track && publication.track.receiver;
  if (!receiver) return 0;
  let bytes = 0;
  (await receiver.getStats()).forEach((stat) => {
    if (stat.type === 'inbound-rtp') bytes += stat.bytesReceived || 0;
  });
  return bytes;
}

async function render(room) {
  const others = {};
  for (const participant of room.remoteParticipants.values()) {
    const audio = participant.getTrackPublication(Track.Source.Microphone);
    others[participant.identity] = audio ? await audioBytes(audio) : 0;
  }
  window.call.others = others;
  $('people').replaceChildren(...Object.entries(others).map(([who, bytes]) => {
    const item = document.createElement('li');
    item.textContent = `${who}: ${bytes} bytes of audio received`;
    return item;
  }));
}

let current = null; // { room, timer } while in a room

async function leave() {
  if (!current) return;
  const { room, timer } = current;
  current = null;
  clearInterval(timer);
  await room.disconnect();
  document.querySelectorAll('audio').forEach((element) => element.remove());
  $('people').replaceChildren();
  window.call.others = {};
  show('left the room');
  $('leave').disabled = true;
  $('go').disabled = false;
}

async function join(event) {
  event.preventDefault();
  $('go').disabled = true;
  try {
    show('fetching a token');
    const url = `${$('service').value.replace(/\/$/, '')}/livekit/token`;
    const headers = $('tenant').value ? { Authorization: `Bearer ${$('tenant').value}` } : {};
    const fetcher = $('fetcher').value === 'fetch' ? tokenFromFetch : tokenFromTokenSource;
    const { serverUrl, token } = await fetcher(url, headers);
    const room = new Room();
    room.on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === Track.Kind.Audio) document.body.appendChild(track.attach());
    });
    room.on(RoomEvent.DataReceived, (payload, participant, kind, topic) => {
      if (topic !== 'tokensvc' || participant) return;  // the server's own, not a participant's
      try {
        window.call.notice = JSON.parse(new TextDecoder().decode(payload));
      } catch {
        return;
      }
      show('removed', explain(window.call.notice));
    });
    room.on(RoomEvent.Disconnected, () => {
      if (window.call.notice) show('removed', explain(window.call.notice));
    });
    show(`joining ${serverUrl}`);
    await room.connect(serverUrl, token);
    await room.localParticipant.setMicrophoneEnabled(true);
    window.call.identity = room.localParticipant.identity;
    show(`in room ${room.name} as ${room.localParticipant.identity}`);
    current = { room, timer: setInterval(() => render(room), 1000) };
    $('leave').disabled = false;
  } catch (error) {
    show('failed', error.message || String(error));
    $('go').disabled = false;
  }
}

$('join').addEventListener('submit', join);
$('leave').addEventListener('click', leave);
if (settings.get('join') === '1') $('go').click();
