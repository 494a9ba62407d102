// Starting `flarum-ws serve` for the Node.js benchmarks: resolves with the
// child process once it listens, rejects with its log if it exits first.
'use strict';
const { spawn } = require('child_process');

function serve(binary, port, env) {
  const child = spawn(binary, ['serve', '--host', '127.0.0.1', '--port', String(port)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let seen = '';
    child.stderr.on('data', (chunk) => {
      seen += chunk;
      if (seen.includes('Listening on')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`flarum-ws exited ${code}: ${seen}`)));
  });
}

module.exports = { serve };
