// node-greeter: a tether plugin written in JavaScript. The protocol lives in
// tether-worker.js; this file is only the plugin.
//
//   hook  greet.make    {name} -> {greeting, runtime, pid}   (greet.recall: a stored key)
//   event user.*        remembered in the plugin's storage as `last_user`
//   route GET /greet/{name}   text;   GET /greeter/stats   JSON
//   middleware on /greet/*    refuses an all-digit name (422), stamps the response

'use strict';

const { Plugin, isTetherError, run, response, ValueError } = require('./tether-worker');

class Greeter extends Plugin {
  async initialize(ctx) {
    super.initialize(ctx);
    await this.addHook(ctx, 'greet.make', (data) => this.greet(data));
    await this.addHook(ctx, 'greet.recall', (key) => ctx.storage.get(key));
    await ctx.subscribeEvent('user.*', (event) => this.remember(event));
    await this.addRoutes(ctx);
    await ctx.registerMiddleware('greeter-stamp', (request, next) => this.stamp(request, next), {
      routes: ['/greet/*'],
    });
    ctx.log.info('node-greeter is ready', { node: process.versions.node });
  }

  // greet.* are hook points an embedding application declares; `tether serve` has
  // none of them, and there the plugin serves its routes only.
  async addHook(ctx, point, handler) {
    try {
      await ctx.registerHook(point, 10, handler);
    } catch (err) {
      if (err.type !== 'tether.errors.HookError') throw err;
      ctx.log.debug(`no hook ${point}: ${err.message}`);
    }
  }

  async addRoutes(ctx) {
    try {
      await ctx.router.get('/greet/{name}', (request) => this.greetRoute(request));
    } catch (err) {
      if (!isTetherError(err)) throw err;
      ctx.log.debug(`no routes: ${err.message}`); // no HTTP host here (not `tether serve`)
      return;
    }
    await ctx.router.get('/greeter/stats', () => this.stats());
  }

  async greet(data) {
    const name = data?.name;
    if (typeof name !== 'string' || !name) {
      throw new ValueError(`greet.make needs a non-empty string 'name', got ${JSON.stringify(name)}`);
    }
    const word = await this.ctx.storage.get('word', 'Hello');
    const greeted = (await this.ctx.storage.get('greeted', 0)) + 1;
    await this.ctx.storage.set('greeted', greeted);
    return { greeting: `${word}, ${name}!`, runtime: 'node', pid: process.pid };
  }

  // Middleware around /greet/*: refuses a name that is all digits, stamps the rest.
  async stamp(request, next) {
    if (/^\/greet\/\d+$/.test(request.path)) {
      return response(JSON.stringify({ refused: request.path }), {
        status: 422,
        headers: { 'content-type': 'application/json' },
      });
    }
    const answer = await next();
    answer.headers.push(['x-stamped-by', 'node-greeter']);
    return answer;
  }

  async remember(event) {
    await this.ctx.storage.set('last_user', { event: event.name, data: event.data });
    this.ctx.log.info(`remembered ${event.name}`, { event_id: event.id });
  }

  async greetRoute(request) {
    const { greeting } = await this.greet({ name: request.path_params.name });
    return response(greeting, { headers: { 'content-type': 'text/plain', 'x-greeter': 'node' } });
  }

  async stats() {
    return {
      greeted: await this.ctx.storage.get('greeted', 0),
      last_user: await this.ctx.storage.get('last_user', null),
    };
  }

  healthCheck() {
    return true;
  }
}

run(Greeter);
