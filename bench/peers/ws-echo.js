// ws-echo.js - the Node.js `ws` package's WebSocket echo server, a peer in
// bench/compare's ws section: every message goes back as it came (text as
// text, binary as binary), any path, no compression.
//
//   node bench/peers/ws-echo.js PORT [HOST (127.0.0.1)]
//
// Prints "listening on HOST:PORT" once it listens; exits 0 on SIGTERM or
// SIGINT. Installed by bench/compare with `npm ci --prefix bench/peers`.
'use strict';

const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
if (!Number.isInteger(port) || port < 0 || port > 65535) {
	console.error('usage: node ws-echo.js PORT [HOST]');
	process.exit(2);
}

// maxPayload: as large as the other servers take (the default is 100 MiB).
const wss = new WebSocketServer({ host, port, perMessageDeflate: false, clientTracking: false });

wss.on('connection', (ws) => {
	ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
	ws.on('error', () => ws.terminate());
});
wss.on('listening', () => {
	const a = wss.address();
	console.log(`listening on ${a.address}:${a.port}`);
});
wss.on('error', (err) => {
	console.error(`ws-echo: ${err.message}`);
	process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT'])
	process.on(sig, () => process.exit(0));
