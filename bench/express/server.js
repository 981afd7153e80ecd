'use strict';
// Benchmark peer: the Express + jsonwebtoken + bcryptjs flow that keyturn's source tutorials teach
// (`login` signs an access token after bcrypt.compare; `protect` checks "Bearer", jwt.verify, then
// loads the user). It is written the way the tutorials write it, so that the benchmark compares
// keyturn with the stack people actually copy, not with a tuned variant of it. The only departures
// are the ones a benchmark needs: an in-memory user instead of a database, keys from the
// environment, and a readiness endpoint.
//
// Environment:
//   PORT                  port to listen on (required; the harness picks a free one)
//   HOST                  address to bind (default 127.0.0.1: loopback only)
//   JWT_ALG               ES256 (default) or HS256
//   JWT_SECRET            HS256 secret (default: random, generated at start)
//   JWT_PRIVATE_KEY_FILE  ES256 private key (PKCS#8 PEM); when absent a P-256 pair is generated at
//                         start, so the harness can share one key between peers when it wants to
//   BENCH_EMAIL / BENCH_PASSWORD  the in-memory user's credentials
//   BCRYPT_COST           bcrypt cost (default 10, as in the tutorials)

const crypto = require('node:crypto');
const fs = require('node:fs');
const express = require('express');
const jwt = require('jsonwebtoken');
const bcrypt = require('bcryptjs');

const ALGORITHM = process.env.JWT_ALG || 'ES256';
if (ALGORITHM !== 'ES256' && ALGORITHM !== 'HS256') {
  throw new Error(`JWT_ALG must be ES256 or HS256, not ${ALGORITHM}`);
}

function loadKeys() {
  // HS256: a string secret, exactly like the tutorials' `process.env.JWT_SECRET`. (jsonwebtoken 9
  // first tries to parse a string key as a public key on every verify and falls back to a secret;
  // that cost is part of the stack as taught, so it is kept.)
  // ES256 (the tutorials show no asymmetric key): KeyObjects parsed once at start, the cheapest
  // form jsonwebtoken accepts, so Express gets its best case here.
  if (ALGORITHM === 'HS256') {
    const secret = process.env.JWT_SECRET || crypto.randomBytes(32).toString('hex');
    return { signingKey: secret, verifyingKey: secret };
  }
  if (process.env.JWT_PRIVATE_KEY_FILE) {
    const privateKey = crypto.createPrivateKey(fs.readFileSync(process.env.JWT_PRIVATE_KEY_FILE));
    return { signingKey: privateKey, verifyingKey: crypto.createPublicKey(privateKey) };
  }
  const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { signingKey: pair.privateKey, verifyingKey: pair.publicKey };
}

const { signingKey, verifyingKey } = loadKeys();

// Stand-in for the tutorials' Mongoose `User` model: one user, hashed at start-up with bcryptjs.
const BENCH_USER = {
  _id: '507f1f77bcf86cd799439011',
  email: process.env.BENCH_EMAIL || 'alice@example.com',
  role: 'admin',
  password: bcrypt.hashSync(process.env.BENCH_PASSWORD || 'correct horse battery staple',
    Number(process.env.BCRYPT_COST || 10)),
};

function publicUser(user) {
  const { password, ...rest } = user;
  return rest;
}

// Async like the tutorials' `await User.findOne(...)` / `await User.findById(...)`.
const User = {
  async findOne({ email }) {
    return email === BENCH_USER.email ? BENCH_USER : null;
  },
  async findById(id) {
    return id === BENCH_USER._id ? publicUser(BENCH_USER) : null;
  },
};

const login = async (req, res) => {
  const { email, password } = req.body || {};
  const user = await User.findOne({ email });

  if (!user || !(await bcrypt.compare(String(password), user.password))) {
    return res.status(401).json({
      success: false,
      error: { code: 'INVALID_CREDENTIALS', message: 'Invalid email or password' },
    });
  }

  const token = jwt.sign(
    { id: user._id, email: user.email, role: user.role },
    signingKey,
    { expiresIn: '15m', algorithm: ALGORITHM },
  );

  res.status(200).json({ success: true, data: { token } });
};

const protect = async (req, res, next) => {
  const authHeader = req.headers.authorization;
  if (!authHeader || !authHeader.startsWith('Bearer ')) {
    return res.status(401).json({ success: false, error: { code: 'UNAUTHORIZED' } });
  }
  try {
    const token = authHeader.split(' ')[1];
    const decoded = jwt.verify(token, verifyingKey, { algorithms: [ALGORITHM] });
    req.user = await User.findById(decoded.id);
    next();
  } catch (err) {
    res.status(401).json({ success: false, error: { code: 'TOKEN_INVALID' } });
  }
};

const app = express();
app.disable('x-powered-by');
app.use(express.json());

app.post('/auth/login', login);
app.get('/api/protected', protect, (req, res) => {
  res.status(200).json({ success: true, data: { user: req.user } });
});
// Unauthenticated and cheap: readiness probe, and the "cheap endpoint" whose latency is watched
// during a login storm.
app.get('/health', (req, res) => {
  res.status(200).json({ status: 'ok' });
});

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  throw new Error('PORT must be set to a port number');
}
const host = process.env.HOST || '127.0.0.1';
const server = app.listen(port, host, () => {
  console.log(`express peer listening on http://${host}:${port} (${ALGORITHM})`);
});

function shutdown() {
  server.close(() => process.exit(0));
  // Keep-alive connections from the load generator would hold close() open; do not wait for them.
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
