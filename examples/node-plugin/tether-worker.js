// tether-worker.js: the worker side of tether's worker protocol (version 1), for
// plugins written in JavaScript for Node.js. Standard library only.
//
// A plugin's program ends with `run(factory)`: the host starts it (manifest
// `command: [node, plugin.js]`, `isolation: process`) in the plugin's directory with
// a Unix socket inherited as the descriptor named by TETHER_WORKER_FD; this module
// shakes hands (codec `json`), answers the host's requests (`load`, `initialize`,
// `plugin.<method>`, `h.<n>`, `s.<service>.<method>`, `release`, `ping`, `renew`),
// sends heartbeats, and gives the plugin a context whose calls become requests to
// the host. The protocol: docs/reference/protocol.md in tether's repository.
//
// See README.md next to this file for the API.

'use strict';

const net = require('node:net');
const path = require('node:path');
const { AsyncLocalStorage } = require('node:async_hooks');

const PROTOCOL = 1;
const MAX_FRAME = 64 * 1024 * 1024;
const REQUEST = 0;
const RESULT = 1;
const FAILURE = 2;
const CANCEL = 3;
const HEARTBEAT = 4;
const LOG_LEVELS = { debug: 10, info: 20, warning: 30, error: 40, critical: 50 };
const THIS_FILE = __filename;

// ---------------------------------------------------------------------------- errors

// An error the other side sent (a failure's map): `type` is its Python class name
// (`KeyError`, `tether.errors.PermissionDeniedError`); rethrowing it keeps that type.
class RemoteError extends Error {
  constructor(error) {
    const map = error && typeof error === 'object' ? error : {};
    super(String(map.message ?? ''));
    this.name = String(map.type ?? 'Exception');
    this.type = this.name;
    this.remoteTraceback = String(map.traceback ?? '');
    this.file = map.file ?? null;
    this.line = map.line ?? null;
  }
}

// An error a plugin throws to fail a call with a given Python type on the host:
// `throw new PluginError('ValueError', 'no such user')`. The builtins most used have
// classes of their own below (`new ValueError('...')`).
class PluginError extends Error {
  constructor(type, message) {
    super(message);
    this.name = type;
    this.type = type;
  }
}

function typed(type) {
  const made = class extends PluginError {
    constructor(message) {
      super(type, message);
    }
  };
  Object.defineProperty(made, 'name', { value: type });
  return made;
}

const errors = {
  PluginError,
  RemoteError,
  ValueError: typed('ValueError'),
  KeyError: typed('KeyError'),
  LookupError: typed('LookupError'),
  PermissionError: typed('PermissionError'),
  RuntimeError: typed('RuntimeError'),
  NotImplementedError: typed('NotImplementedError'),
  TimeoutError: typed('TimeoutError'),
  CancelledError: typed('CancelledError'),
};

// JavaScript's own error classes, as the Python builtins a host raises for them.
const BUILTIN_TYPES = new Map([
  [Error, 'RuntimeError'],
  [TypeError, 'TypeError'],
  [RangeError, 'ValueError'],
  [ReferenceError, 'NameError'],
  [SyntaxError, 'SyntaxError'],
  [EvalError, 'RuntimeError'],
  [URIError, 'ValueError'],
]);

function errorType(err) {
  if (typeof err?.type === 'string' && err.type) return err.type;
  const builtin = err && BUILTIN_TYPES.get(err.constructor);
  if (builtin) return builtin;
  if (err instanceof Error) return `js.${err.constructor?.name || err.name || 'Error'}`;
  return 'Exception';
}

// The last frame of `stack` in the plugin's own files (not this library's, not Node's).
function pluginFrame(stack, directory) {
  for (const line of String(stack ?? '').split('\n')) {
    const found = /\(?((?:file:\/\/)?\/[^():]+):(\d+):\d+\)?\s*$/.exec(line.trim());
    if (!found) continue;
    const file = found[1].replace(/^file:\/\//, '');
    if (file === THIS_FILE || !file.startsWith(directory + path.sep)) continue;
    if (file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    return { file, line: Number(found[2]) };
  }
  return { file: null, line: null };
}

// An error (or anything thrown) as the protocol's error map.
function describeError(err, directory = process.cwd()) {
  if (err instanceof RemoteError) {
    return {
      type: err.type,
      message: err.message,
      traceback: err.remoteTraceback,
      file: err.file,
      line: err.line,
    };
  }
  const isError = err instanceof Error;
  const where = isError ? pluginFrame(err.stack, directory) : { file: null, line: null };
  return {
    type: errorType(err),
    message: isError ? err.message : String(err),
    traceback: isError ? String(err.stack ?? '') : '',
    file: where.file,
    line: where.line,
  };
}

// Whether `err` is one of tether's own errors the host sent (`tether.errors.*`): a
// permission the plugin lacks, a router where the host serves no HTTP...
function isTetherError(err) {
  return err instanceof RemoteError && err.type.startsWith('tether.errors.');
}

const CANCELLED = {
  type: 'CancelledError',
  message: 'cancelled',
  traceback: '',
  file: null,
  line: null,
};

// ---------------------------------------------------------------------------- framing

// Splits the bytes read from the socket into frame bodies.
class FrameReader {
  constructor() {
    this.chunks = [];
    this.size = 0;
  }

  // The complete frame bodies `chunk` finishes (throws on a frame over the limit).
  push(chunk) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const bodies = [];
    let buffer = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    while (buffer.length >= 4) {
      const length = buffer.readUInt32BE(0);
      if (length > MAX_FRAME) {
        throw new Error(`a frame of ${length} bytes is over the limit of ${MAX_FRAME}`);
      }
      if (buffer.length < 4 + length) break;
      bodies.push(buffer.subarray(4, 4 + length));
      buffer = buffer.subarray(4 + length);
    }
    this.chunks = buffer.length ? [buffer] : [];
    this.size = buffer.length;
    return bodies;
  }
}

function frame(body) {
  if (body.length > MAX_FRAME) {
    throw new errors.ValueError(
      `a message of ${body.length} bytes is over the limit of ${MAX_FRAME}`,
    );
  }
  const header = Buffer.allocUnsafe(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

// JSON that refuses what JSON cannot carry (a BigInt, a function, a cycle) with a
// TypeError naming its type, instead of sending something else.
function encode(value) {
  const seen = new Set();
  const check = (item) => {
    const kind = typeof item;
    if (kind === 'bigint' || kind === 'function' || kind === 'symbol') {
      throw new TypeError(`${kind} cannot be sent to the host`);
    }
    if (item && kind === 'object') {
      if (seen.has(item)) throw new TypeError('a cyclic structure cannot be sent to the host');
      if (item instanceof Date || Buffer.isBuffer(item)) return;
      seen.add(item);
      for (const inner of Object.values(item)) check(inner);
      seen.delete(item);
    }
  };
  check(value);
  return Buffer.from(JSON.stringify(value, (_key, item) => (item === undefined ? null : item)));
}

// ---------------------------------------------------------------------------- the connection

// One end of the protocol after the handshake: requests both ways, numbered from 1.
class Connection {
  constructor(socket, { onRequest, onCancel }) {
    this.socket = socket;
    this.onRequest = onRequest;
    this.onCancel = onCancel;
    this.nextId = 1;
    this.waiting = new Map(); // id -> {resolve, reject}
    this.closed = null;
  }

  send(message) {
    if (this.closed !== null) throw new Error(`the channel is closed: ${this.closed}`);
    this.socket.write(frame(encode(message)));
  }

  // Ask the host for `target`; resolves to its answer, rejects with a RemoteError.
  // Aborting `signal` cancels the request (`[3, id]`) and rejects at once.
  request(target, args = [], kwargs = {}, { signal } = {}) {
    return new Promise((resolve, reject) => {
      if (this.closed !== null) {
        reject(new Error(`the channel is closed: ${this.closed}`));
        return;
      }
      const id = this.nextId++;
      this.waiting.set(id, { resolve, reject });
      try {
        this.send([REQUEST, id, target, args, kwargs]);
      } catch (err) {
        this.waiting.delete(id);
        reject(err);
        return;
      }
      signal?.addEventListener(
        'abort',
        () => {
          if (!this.waiting.delete(id)) return;
          try {
            this.send([CANCEL, id]);
          } catch {
            // closed meanwhile: nothing left to cancel
          }
          reject(new errors.CancelledError(`${target} was cancelled`));
        },
        { once: true },
      );
    });
  }

  notify(target, args = [], kwargs = {}) {
    this.send([REQUEST, 0, target, args, kwargs]);
  }

  answer(id, value) {
    if (!id || this.closed !== null) return;
    let body;
    try {
      body = frame(encode([RESULT, id, value]));
    } catch (err) {
      this.fail(id, err);
      return;
    }
    this.socket.write(body);
  }

  fail(id, err) {
    if (!id || this.closed !== null) return;
    const map = err && typeof err === 'object' && 'type' in err && !(err instanceof Error)
      ? err
      : describeError(err);
    this.send([FAILURE, id, map]);
  }

  receive(message) {
    if (!Array.isArray(message)) throw new Error('a message that is not an array');
    const kind = message[0];
    if (kind === RESULT || kind === FAILURE) {
      const waiter = this.waiting.get(message[1]);
      if (!waiter) return; // cancelled: its late answer is dropped
      this.waiting.delete(message[1]);
      if (kind === RESULT) waiter.resolve(message[2]);
      else waiter.reject(new RemoteError(message[2]));
    } else if (kind === REQUEST) {
      const [, id, target, args, kwargs] = message;
      this.onRequest(id, String(target), Array.isArray(args) ? args : [], kwargs ?? {});
    } else if (kind === CANCEL) {
      this.onCancel(message[1]);
    } else if (kind === HEARTBEAT) {
      // the host sends none; tolerated
    } else {
      throw new Error(`a message of unknown kind ${JSON.stringify(kind)}`);
    }
  }

  close(reason) {
    if (this.closed !== null) return;
    this.closed = reason;
    for (const waiter of this.waiting.values()) {
      waiter.reject(new Error(`the channel closed: ${reason}`));
    }
    this.waiting.clear();
  }
}

// ---------------------------------------------------------------------------- the context

const requestContext = new AsyncLocalStorage();

// The AbortSignal of the host's request being served (aborted when the host cancels
// it), or undefined outside one.
function currentSignal() {
  return requestContext.getStore()?.signal;
}

function isAsyncFunction(fn) {
  return typeof fn === 'function' && fn.constructor?.name === 'AsyncFunction';
}

// A family of host services called by operation: `family.get('k')` asks the host
// `[target, [op, args, {}]]`.
function serviceFamily(connection, target) {
  return new Proxy(
    {},
    {
      get(_object, op) {
        if (typeof op !== 'string' || op.startsWith('_') || op === 'then') return undefined;
        return (...args) => connection.request(target, [op, args, {}]);
      },
    },
  );
}

class Registration {
  constructor(connection, id, label) {
    this.connection = connection;
    this.id = id;
    this.label = label;
    this.active = true;
  }

  async remove() {
    if (!this.active) return;
    this.active = false;
    await this.connection.request('ctx.remove', [this.id]);
  }
}

function eventFromWire(data) {
  return {
    id: data.id,
    name: data.name,
    data: data.data,
    source: data.source,
    time: new Date(Number(data.time) * 1000),
  };
}

// The plugin's `ctx` in a Node.js worker (see README.md).
class Context {
  constructor(worker, info) {
    this._worker = worker;
    this._connection = worker.connection;
    this._release = [];
    this.name = info.name;
    this.version = info.version;
    this.permissions = Object.freeze([...(info.permissions ?? [])]);
    this.config = info.config ?? {};
    this.dataDir = info.data_dir ?? null;
    this.logLevel = Number(info.log_level ?? LOG_LEVELS.info);
    this.storage = serviceFamily(this._connection, 'ctx.storage');
    this.metrics = serviceFamily(this._connection, 'ctx.metrics');
    this.cache = serviceFamily(this._connection, 'ctx.cache');
    this.database = serviceFamily(this._connection, 'ctx.database');
    this.settings = serviceFamily(this._connection, 'ctx.config');
    this.log = this._logger({});
    this.router = this._router('');
  }

  hasPermission(permission) {
    return this.permissions.includes(permission);
  }

  _logger(fields) {
    const logger = { withFields: (more) => this._logger({ ...fields, ...more }) };
    for (const [method, level] of Object.entries(LOG_LEVELS)) {
      logger[method] = (text, more = {}) => {
        if (level < this.logLevel || this._connection.closed !== null) return;
        this._connection.notify('ctx.log', [level, String(text), plainFields({ ...fields, ...more })]);
      };
    }
    logger.warn = logger.warning;
    return logger;
  }

  _router(prefix) {
    const router = { group: (more) => this._router(joinPath(prefix, more)) };
    for (const op of ['get', 'post', 'put', 'patch', 'delete']) {
      router[op] = async (route, handler) => {
        const target = this._worker.addHandler(handler);
        await this._connection.request('ctx.router', [op, [joinPath(prefix, route), target], {}]);
      };
    }
    return router;
  }

  // A hook handler: the host calls it with the hook's data and uses what it returns
  // (awaited here either way). `async: true` makes the host await it instead of
  // blocking (hooks run with `hooks.run`); `timeout` (seconds) bounds each call.
  async registerHook(point, priority, handler, { timeout = null, async: isAsync = false } = {}) {
    const target = this._worker.addHandler(handler);
    const id = await this._connection.request('ctx.register_hook', [
      String(point), priority, target, Boolean(isAsync), timeout,
    ]);
    return new Registration(this._connection, id, `hook ${point}`);
  }

  // An event handler: called with `{id, name, data, source, time: Date}`. By default
  // the host awaits it (`async: false` makes the host's event loop wait for it).
  async subscribeEvent(pattern, handler, { async: isAsync = true } = {}) {
    const target = this._worker.addHandler((data, ...rest) => handler(eventFromWire(data), ...rest));
    const id = await this._connection.request('ctx.subscribe_event', [
      String(pattern), target, Boolean(isAsync),
    ]);
    return new Registration(this._connection, id, `subscription ${pattern}`);
  }

  // An HTTP middleware: `handler(request, next)` gets the request map; `await next()`
  // runs the rest of the chain (the request goes on as it came) and resolves to its
  // response map, which the handler may change and return, or it answers itself
  // (`response(...)`). `routes`: globs of the paths it wraps (null: every route).
  async registerMiddleware(name, handler, { priority = 100, routes = null } = {}) {
    const target = this._worker.addHandler((request, token) =>
      handler(request, () => this._connection.request('ctx.call_next', [token, request])));
    const id = await this._connection.request('ctx.register_middleware', [
      String(name), target, priority, routes ? [...routes] : null,
    ]);
    const registration = new Registration(this._connection, id, `middleware ${name}`);
    registration.remove = async () => {
      if (!registration.active) return;
      registration.active = false;
      await this.unregisterMiddleware(name);
    };
    return registration;
  }

  async unregisterMiddleware(name) {
    await this._connection.request('ctx.unregister_middleware', [String(name)]);
  }

  async publishEvent(name, data = null) {
    return eventFromWire(await this._connection.request('ctx.publish_event', [name, data]));
  }

  async publishEventNowait(name, data = null) {
    return eventFromWire(await this._connection.request('ctx.publish_event_nowait', [name, data]));
  }

  // Export `service` (an object) under `name`: its methods become `s.<name>.<method>`.
  async exportService(name, service) {
    const methods = {};
    for (const method of methodNames(service)) {
      const fn = service[method];
      methods[method] = isAsyncFunction(fn);
      this._worker.targets.set(`s.${name}.${method}`, fn.bind(service));
    }
    await this._connection.request('ctx.export_service', [name, methods]);
  }

  // Another plugin's service: an object whose methods return promises of its answers.
  async importService(plugin, name) {
    const found = await this._connection.request('ctx.import_service', [plugin, name]);
    const proxy = {};
    for (const method of Object.keys(found.methods ?? {})) {
      proxy[method] = (...args) =>
        this._connection.request('ctx.service_call', [found.id, method, args, {}]);
    }
    return proxy;
  }

  onRelease(callback) {
    this._release.push(callback);
  }

  async release() {
    const callbacks = this._release.splice(0).reverse();
    for (const callback of callbacks) {
      try {
        await callback();
      } catch (err) {
        this.log.error(`a release callback failed: ${err?.stack ?? err}`);
      }
    }
  }
}

function joinPath(prefix, route) {
  if (!prefix) return route;
  return prefix.replace(/\/+$/, '') + route;
}

function plainFields(fields) {
  const plain = {};
  for (const [key, value] of Object.entries(fields)) {
    const kind = typeof value;
    plain[key] = value === null || ['string', 'number', 'boolean'].includes(kind)
      ? value
      : String(value);
  }
  return plain;
}

// The public method names of `object` (own and inherited, not Object's).
function methodNames(object) {
  const names = new Set();
  for (let level = object; level && level !== Object.prototype; level = Object.getPrototypeOf(level)) {
    for (const name of Object.getOwnPropertyNames(level)) {
      if (name === 'constructor' || name.startsWith('_')) continue;
      const descriptor = Object.getOwnPropertyDescriptor(level, name);
      if (descriptor && typeof descriptor.value === 'function') names.add(name);
    }
  }
  return [...names].sort();
}

// `healthCheck` -> `health_check`: the host calls a plugin's methods by Python names.
function snakeCase(name) {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

// ---------------------------------------------------------------------------- the base class

// An optional base class with no-op lifecycle methods, as Python's `tether.Plugin`: the
// host requires `initialize`, `start` and `stop` of every plugin object. `initialize`
// keeps the context as `this.ctx`; call `super.initialize(ctx)` when overriding it.
class Plugin {
  initialize(ctx) {
    this.ctx = ctx;
  }

  start() {}

  stop() {}

  cleanup() {}

  onConfigChange(_config) {}
}

// ---------------------------------------------------------------------------- responses

// A route's answer with a status and headers (anything else a handler returns is sent
// as JSON with status 200).
function response(body = '', { status = 200, headers = {} } = {}) {
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return { status, headers: pairs.map(([k, v]) => [String(k), String(v)]), body: String(body) };
}

function header(request, name) {
  const wanted = name.toLowerCase();
  const found = (request.headers ?? []).find(([k]) => String(k).toLowerCase() === wanted);
  return found ? found[1] : undefined;
}

// ---------------------------------------------------------------------------- the worker

class Worker {
  constructor(factory) {
    this.factory = factory;
    this.connection = null;
    this.plugin = null;
    this.manifest = null;
    this.context = null;
    this.handlers = 0;
    this.running = new Map(); // request id -> AbortController
    this.targets = new Map([
      ['load', (manifest) => this.load(manifest)],
      ['renew', () => this.renew()],
      ['initialize', (info) => this.initialize(info)],
      ['release', () => this.release()],
      ['ping', (payload = null) => payload],
    ]);
  }

  addHandler(handler) {
    if (typeof handler !== 'function') throw new TypeError('a handler must be a function');
    this.handlers += 1;
    const target = `h.${this.handlers}`;
    this.targets.set(target, handler);
    return target;
  }

  serve(id, target, args, kwargs) {
    const fn = this.targets.get(target);
    if (fn === undefined) {
      this.connection.fail(id, new errors.LookupError(`no target '${target}' in this worker`));
      return;
    }
    const call = Object.keys(kwargs).length ? [...args, kwargs] : args;
    const abort = new AbortController();
    if (id) this.running.set(id, abort);
    const settle = (ok, value) => {
      if (this.running.get(id) !== abort) return; // cancelled and answered already
      this.running.delete(id);
      if (ok) this.connection.answer(id, value);
      else this.connection.fail(id, value);
    };
    requestContext.run({ signal: abort.signal, target }, () => {
      try {
        Promise.resolve(fn(...call)).then(
          (value) => settle(true, value),
          (err) => settle(false, err),
        );
      } catch (err) {
        settle(false, err);
      }
    });
  }

  cancel(id) {
    const abort = this.running.get(id);
    if (!abort) return; // finished already: its answer is on its way
    this.running.delete(id);
    abort.abort();
    this.connection.fail(id, CANCELLED);
  }

  _take(plugin) {
    this.plugin = plugin;
    for (const key of [...this.targets.keys()]) {
      if (/^(plugin|h|s)\./.test(key)) this.targets.delete(key);
    }
    const methods = {};
    for (const name of methodNames(plugin)) {
      const fn = plugin[name];
      const wire = snakeCase(name);
      methods[wire] = isAsyncFunction(fn);
      this.targets.set(`plugin.${wire}`, fn.bind(plugin));
    }
    const schema = plugin.configSchema ?? plugin.config_schema ?? null;
    return {
      methods,
      config_schema: schema && typeof schema === 'object' ? schema : null,
      class: plugin.constructor?.name && plugin.constructor !== Object
        ? plugin.constructor.name
        : String(this.manifest?.name ?? 'Plugin'),
    };
  }

  _make() {
    const factory = this.factory;
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(factory));
    const made = isClass ? new factory(this.manifest) : factory(this.manifest);
    if (!made || typeof made !== 'object') {
      throw new TypeError(`the plugin factory returned ${made === null ? 'null' : typeof made}, not an object`);
    }
    return made;
  }

  load(manifest) {
    this.manifest = manifest;
    return this._take(this._make());
  }

  async renew() {
    if (this.context) await this.context.release();
    this.context = null;
    return this._take(this._make());
  }

  async initialize(info) {
    this.context = new Context(this, info);
    if (typeof this.plugin?.initialize === 'function') await this.plugin.initialize(this.context);
    return null;
  }

  async release() {
    if (this.context) await this.context.release();
    return null;
  }
}

// ---------------------------------------------------------------------------- running

function handshake(socket) {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const hello = {
      type: 'hello',
      protocols: [PROTOCOL],
      codecs: ['json'],
      language: 'javascript',
      runtime: `node ${process.versions.node}`,
      pid: process.pid,
    };
    const onData = (chunk) => {
      let bodies;
      try {
        bodies = reader.push(chunk);
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      if (!bodies.length) return;
      cleanup();
      let welcome;
      try {
        welcome = JSON.parse(bodies[0].toString('utf8'));
      } catch {
        reject(new Error('the host answered the hello with something that is not JSON'));
        return;
      }
      if (welcome?.type !== 'welcome') {
        reject(new Error(`the host refused the handshake: ${welcome?.reason ?? JSON.stringify(welcome)}`));
        return;
      }
      if (welcome.protocol !== PROTOCOL || welcome.codec !== 'json') {
        reject(new Error(`the host chose protocol ${welcome.protocol}, codec ${welcome.codec}; this worker speaks 1, json`));
        return;
      }
      resolve({ welcome, rest: reader, extra: bodies.slice(1) });
    };
    const onEnd = () => {
      cleanup();
      reject(new Error('the host closed the socket during the handshake'));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.write(frame(Buffer.from(JSON.stringify(hello))));
  });
}

function fail(message) {
  process.stderr.write(`tether worker (node): ${message}\n`);
  process.exit(1);
}

// Run the plugin `factory` makes (a function or a class, called once per `load` with
// the manifest) as a tether worker. Never returns; the process ends when the host
// closes the socket.
async function run(factory) {
  const fd = Number.parseInt(process.env.TETHER_WORKER_FD ?? '', 10);
  if (!Number.isInteger(fd)) {
    fail('TETHER_WORKER_FD is not set: this program is started by tether, as a plugin with '
      + '`isolation: process` and `command: [node, plugin.js]`');
  }
  delete process.env.TETHER_WORKER_FD;
  const socket = new net.Socket({ fd, readable: true, writable: true });
  let end = null; // set once the handshake is over
  socket.on('error', (err) => (end ? end() : fail(`the socket failed: ${err.message}`)));
  let handshook;
  try {
    handshook = await handshake(socket);
  } catch (err) {
    fail(err.message);
  }
  const worker = new Worker(factory);
  const connection = new Connection(socket, {
    onRequest: (id, target, args, kwargs) => worker.serve(id, target, args, kwargs),
    onCancel: (id) => worker.cancel(id),
  });
  worker.connection = connection;
  const reader = handshook.rest;
  const dispatch = (body) => connection.receive(JSON.parse(body.toString('utf8')));
  const broken = (err) => {
    connection.close(err.message);
    fail(`the host sent what this worker cannot read: ${err.message}`);
  };
  try {
    handshook.extra.forEach(dispatch);
  } catch (err) {
    broken(err);
  }
  socket.on('data', (chunk) => {
    try {
      reader.push(chunk).forEach(dispatch);
    } catch (err) {
      broken(err);
    }
  });
  let sequence = 0;
  const interval = Number(handshook.welcome.heartbeat ?? 1) * 1000;
  const beat = setInterval(() => {
    sequence += 1;
    try {
      connection.send([HEARTBEAT, sequence]);
    } catch {
      clearInterval(beat);
    }
  }, Math.max(interval, 10));
  beat.unref();
  let ending = false;
  end = async () => {
    if (ending) return;
    ending = true;
    clearInterval(beat);
    connection.close('the host closed the socket');
    try {
      await worker.release();
    } finally {
      process.exit(0);
    }
  };
  socket.on('end', end);
  socket.on('close', end);
}

module.exports = {
  run,
  Plugin,
  response,
  header,
  currentSignal,
  errors,
  describeError,
  isTetherError,
  FrameReader,
  PROTOCOL,
  MAX_FRAME,
  ...errors,
};
