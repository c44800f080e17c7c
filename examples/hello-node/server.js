// The demo app: a tiny HTTP server with one npm dependency (ms, to format its uptime).
const http = require('node:http');
const ms = require('ms');

const started = Date.now();
const port = Number(process.env.PORT || 8080);
http
  .createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from flick (up ${ms(Date.now() - started)})\n`);
  })
  .listen(port, () => console.log(`listening on ${port}`));
