// y-webrtc's own signaling server (node_modules/y-webrtc/bin/server.js), bound to 127.0.0.1
// (the script listens on all interfaces; this pins the host). PORT selects the port (4444).
import http from 'node:http';

const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (port, ...rest) {
  return listen.call(this, port, process.env.HOST ?? '127.0.0.1', ...rest);
};
await import(new URL('../../node_modules/y-webrtc/bin/server.js', import.meta.url).href);
