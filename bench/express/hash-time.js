'use strict';
// Time one bcryptjs compare at the server's cost, the way `login` calls it (async, on Node's only
// thread). The harness turns it into the Express peer's hash-bound limit: an event loop runs one
// compare at a time, so logins/s can never exceed 1 / (seconds per compare).
// Prints one JSON line: {"cost": 10, "samples": N, "median_ms": ...}.

const bcrypt = require('bcryptjs');

async function main() {
  const cost = Number(process.env.BCRYPT_COST || 10);
  const samples = Number(process.env.SAMPLES || 15);
  const password = 'correct horse battery staple';
  const hash = bcrypt.hashSync(password, cost);
  await bcrypt.compare(password, hash); // warm-up: JIT
  const times = [];
  for (let i = 0; i < samples; i += 1) {
    const start = process.hrtime.bigint();
    if (!(await bcrypt.compare(password, hash))) throw new Error('compare failed');
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ cost, samples, median_ms: times[Math.floor(times.length / 2)] }));
}

main();
