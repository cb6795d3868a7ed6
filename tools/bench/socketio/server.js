// Socket.IO 4 comparison server for roomcast-bench --flavor socketio.
//
//   node server.js --port P [--redis 127.0.0.1:6379]
//
// - WebSocket transport only (no HTTP long-polling), default namespace "/".
// - A client joins the room given in the handshake query: /socket.io/?EIO=4&transport=websocket&room=r1
// - POST /api/publish {"room":"r1","data":{...}} (or a JSON array of such objects) does
//   io.to(room).emit("message", data); with --redis the @socket.io/redis-adapter carries it to the
//   other nodes through Redis pub/sub. Answers 200 {"ok":true}.
// - GET /api/stats: {"connections":N} on this node.
'use strict';

const http = require('http');
const { Server } = require('socket.io');

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const port = Number(arg('--port', '3000'));
const redisAddr = arg('--redis', '');

const httpServer = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/api/publish') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let items;
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        items = Array.isArray(body) ? body : [body];
      } catch (e) {
        return reply(res, 400, '{"error":"bad json"}');
      }
      for (const it of items) {
        if (!it || typeof it.room !== 'string') return reply(res, 400, '{"error":"room missing"}');
      }
      for (const it of items) io.to(it.room).emit('message', it.data);
      reply(res, 200, '{"ok":true}');
    });
    return;
  }
  if (req.method === 'GET' && req.url === '/api/stats') {
    return reply(res, 200, JSON.stringify({ connections: io.engine.clientsCount }));
  }
  reply(res, 404, '{"error":"not found"}');
});

function reply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  cors: { origin: '*' },
});

io.on('connection', (socket) => {
  const room = socket.handshake.query.room;
  if (typeof room === 'string' && room.length) socket.join(room);
});

async function main() {
  if (redisAddr) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const url = 'redis://' + redisAddr;
    const pubClient = createClient({ url });
    const subClient = pubClient.duplicate();
    pubClient.on('error', (e) => console.error('redis pub error', e.message));
    subClient.on('error', (e) => console.error('redis sub error', e.message));
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(createAdapter(pubClient, subClient));
  }
  httpServer.listen(port, '127.0.0.1', () => {
    console.log(`socket.io server on 127.0.0.1:${port}` + (redisAddr ? ` (redis adapter ${redisAddr})` : ''));
  });
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
