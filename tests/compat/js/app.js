// An app written only with the official npm `inngest` package (pinned in package.json and
// package-lock.json), served with Node's http server through `inngest/node`. The compat test
// (test_official_js.py) runs it with node against our executor.
//
// Every step body appends `<run id> <what> <unix time>` to $COUNTER_FILE, so the test can count
// how often a body really ran and when. The http wrapper below (plain Node, no SDK involved)
// records, for every call request, whether the executor sent `use_api` and whether `ctx.fn_id`
// was set (which would switch v4 into checkpointing), then hands the request to the SDK as is.

import fs from "node:fs";
import http from "node:http";
import { Readable } from "node:stream";

import { Inngest, NonRetriableError, RetryAfterError } from "inngest";
import { serve } from "inngest/node";

const COUNTER_FILE = process.env.COUNTER_FILE || "/tmp/compat-js-counter.txt";
const PORT = Number(process.env.PORT || 3000);
const BIG_CHARS = Math.floor(1.8 * 1024 * 1024);

const inngest = new Inngest({ id: "compat-js" });

function mark(key, what) {
  fs.appendFileSync(COUNTER_FILE, `${key} ${what} ${(Date.now() / 1000).toFixed(6)}\n`);
}

// -- several step.run ---------------------------------------------------------------------
const steps = inngest.createFunction(
  { id: "steps", triggers: [{ event: "compat/steps" }] },
  async ({ event, step, runId }) => {
    const n = await step.run("first", () => {
      mark(runId, "first");
      return Number(event.data.n);
    });
    const doubled = await step.run("second", () => {
      mark(runId, "second");
      return { doubled: n * 2, tags: ["a", "b"] };
    });
    const nothing = await step.run("third", () => {
      mark(runId, "third");
    });
    return { n, doubled: doubled.doubled, tags: doubled.tags, third: nothing };
  },
);

// -- sleep ----------------------------------------------------------------------------------
const sleeper = inngest.createFunction(
  { id: "sleeper", triggers: [{ event: "compat/sleep" }] },
  async ({ event, step, runId }) => {
    await step.run("before", () => mark(runId, "before"));
    await step.sleep("nap", `${Number(event.data.seconds ?? 1)}s`);
    await step.run("after", () => mark(runId, "after"));
    return "rested";
  },
);

// -- waitForEvent ---------------------------------------------------------------------------
const waiter = inngest.createFunction(
  { id: "waiter", triggers: [{ event: "compat/wait" }] },
  async ({ event, step, runId }) => {
    const reply = await step.waitForEvent("wait-reply", {
      event: "compat/reply",
      if: "async.data.id == event.data.id",
      timeout: `${Number(event.data.timeout_s ?? 20)}s`,
    });
    await step.run("after", () => mark(runId, "after"));
    if (reply === null) {
      return { matched: null };
    }
    return { matched: reply.data, reply_name: reply.name, reply_id: reply.id };
  },
);

// -- invoke ---------------------------------------------------------------------------------
const adder = inngest.createFunction(
  { id: "adder", triggers: [{ event: "compat/add-direct" }] },
  async ({ event, step }) => {
    const total = await step.run("sum", () => event.data.a + event.data.b);
    return { sum: total };
  },
);

const invoker = inngest.createFunction(
  { id: "invoker", triggers: [{ event: "compat/invoke" }] },
  async ({ event, step }) => {
    const invoked = await step.invoke("call-adder", {
      function: adder,
      data: { a: event.data.a, b: event.data.b },
    });
    const after = await step.run("after", () => "after-invoke");
    return { invoked, after };
  },
);

// -- parallel steps -------------------------------------------------------------------------
const parallel = inngest.createFunction(
  { id: "parallel", triggers: [{ event: "compat/parallel" }] },
  async ({ step, runId }) => {
    const part = (name) => () => {
      mark(runId, `part-${name}`);
      return `${name}-done`;
    };
    const parts = await Promise.all([
      step.run("part-a", part("a")),
      step.run("part-b", part("b")),
      step.run("part-c", part("c")),
    ]);
    const joined = await step.run("join", () => parts.join("+"));
    return { parts, joined };
  },
);

// -- parallel steps: a step.run and a sleep ------------------------------------------------
const parallelMixed = inngest.createFunction(
  { id: "parallel-mixed", triggers: [{ event: "compat/parallel-mixed" }] },
  async ({ step, runId }) => {
    const results = await Promise.all([
      step.run("quick", () => {
        mark(runId, "quick");
        return "quick-done";
      }),
      step.sleep("short-nap", "1s"),
    ]);
    await step.run("after", () => mark(runId, "after"));
    return { results };
  },
);

// -- sendEvent fan-out ----------------------------------------------------------------------
const fanout = inngest.createFunction(
  { id: "fanout", triggers: [{ event: "compat/fanout" }] },
  async ({ event, step }) => {
    const batch = event.data.batch;
    const sent = await step.sendEvent(
      "fan-out",
      [0, 1, 2].map((i) => ({ name: "compat/fanned", data: { batch, i } })),
    );
    return { ids: sent.ids };
  },
);

const fanTarget = inngest.createFunction(
  { id: "fan-target", triggers: [{ event: "compat/fanned" }] },
  async ({ event, step }) => {
    const square = await step.run("square", () => event.data.i * event.data.i);
    return { batch: event.data.batch, i: event.data.i, square };
  },
);

// -- errors ---------------------------------------------------------------------------------
const retryAfter = inngest.createFunction(
  { id: "retry-after", triggers: [{ event: "compat/retry-after" }], retries: 2 },
  async ({ step, runId, attempt }) => {
    return await step.run("flaky", () => {
      mark(runId, "flaky");
      if (attempt === 0) {
        throw new RetryAfterError("rate limited", 2000);
      }
      return `ok on attempt ${attempt}`;
    });
  },
);

const nonRetriable = inngest.createFunction(
  { id: "non-retriable", triggers: [{ event: "compat/non-retriable" }], retries: 3 },
  async ({ step, runId }) => {
    return await step.run("refuse", () => {
      mark(runId, "refuse");
      throw new NonRetriableError("card declined");
    });
  },
);

const doomed = inngest.createFunction(
  {
    id: "doomed",
    triggers: [{ event: "compat/doomed" }],
    retries: 1,
    onFailure: async ({ event, error }) => {
      mark(String(event.data.run_id), "on-failure");
      return {
        failed_run: event.data.run_id,
        function_id: event.data.function_id,
        message: event.data.error?.message,
        handler_error_message: error?.message,
        original: event.data.event,
        trigger: event.name,
      };
    },
  },
  async ({ event, step, runId }) => {
    return await step.run("explode", () => {
      mark(runId, "explode");
      throw new Error(`reactor ${event.data.reactor} melted`);
    });
  },
);

// -- cancel on an event ---------------------------------------------------------------------
const cancellable = inngest.createFunction(
  {
    id: "cancellable",
    triggers: [{ event: "compat/cancellable" }],
    cancelOn: [{ event: "compat/cancel", if: "async.data.id == event.data.id" }],
  },
  async ({ step, runId }) => {
    await step.run("before", () => mark(runId, "before"));
    await step.sleep("long-nap", "60s");
    await step.run("after", () => mark(runId, "after"));
    return "woke up";
  },
);

// -- large state: 3 x 1.8 MiB memos, so later calls carry use_api ---------------------------
const bigState = inngest.createFunction(
  { id: "big-state", triggers: [{ event: "compat/big" }] },
  async ({ event, step, runId }) => {
    const blobs = [];
    for (const letter of ["x", "y", "z"]) {
      blobs.push(await step.run(`big-${letter}`, () => letter.repeat(BIG_CHARS)));
    }
    // a new request after the state passed 4 MiB, even when v4 checkpoints the steps above
    await step.sleep("breath", "1s");
    const summary = await step.run("summary", () => {
      mark(runId, "summary");
      return { lengths: blobs.map((b) => b.length), heads: blobs.map((b) => b.slice(0, 3)) };
    });
    return { ...summary, trigger: event.data };
  },
);

// -- invoke failures: the callee's error, and a timeout ------------------------------------
const fragile = inngest.createFunction(
  { id: "fragile", triggers: [{ event: "compat/fragile-direct" }], retries: 0 },
  async ({ event }) => {
    throw new Error(`fragile broke: ${event.data.why}`);
  },
);

const slow = inngest.createFunction(
  { id: "slow", triggers: [{ event: "compat/slow-direct" }] },
  async ({ step }) => {
    await step.sleep("dawdle", "30s");
    return "too late";
  },
);

const invokeErrors = inngest.createFunction(
  { id: "invoke-errors", triggers: [{ event: "compat/invoke-errors" }] },
  async ({ step }) => {
    const out = {};
    try {
      await step.invoke("call-fragile", { function: fragile, data: { why: "on purpose" } });
      out.fragile = "no error";
    } catch (err) {
      out.fragile = { name: err.name, message: err.message };
    }
    try {
      await step.invoke("call-slow", { function: slow, data: {}, timeout: "1s" });
      out.slow = "no error";
    } catch (err) {
      out.slow = { name: err.name, message: err.message };
    }
    return out;
  },
);

// -- a function-level error (outside any step) is retried ----------------------------------
const flakyFn = inngest.createFunction(
  { id: "flaky-fn", triggers: [{ event: "compat/flaky-fn" }], retries: 2 },
  async ({ runId, attempt }) => {
    mark(runId, "body");
    if (attempt === 0) {
      throw new Error("first attempt fails outside any step");
    }
    return `ok on attempt ${attempt}`;
  },
);

// -- sleepUntil a (memoized) moment ----------------------------------------------------------
const sleepUntil = inngest.createFunction(
  { id: "sleep-until", triggers: [{ event: "compat/sleep-until" }] },
  async ({ step, runId }) => {
    const wake = await step.run("target", () => {
      mark(runId, "before");
      return new Date(Date.now() + 2000).toISOString();
    });
    await step.sleepUntil("until", new Date(wake));
    await step.run("after", () => mark(runId, "after"));
    return wake;
  },
);

// -- flow control options, as the SDK renders them -----------------------------------------
const debounced = inngest.createFunction(
  {
    id: "debounced",
    triggers: [{ event: "compat/debounce" }],
    debounce: { period: "1s", key: "event.data.group" },
  },
  async ({ event, events }) => ({ n: event.data.n, events: events.length }),
);

const serial = inngest.createFunction(
  { id: "serial", triggers: [{ event: "compat/serial" }], concurrency: [{ limit: 1 }] },
  async ({ event, step }) => {
    return await step.run("work", async () => {
      mark(event.data.batch, "start");
      await new Promise((resolve) => setTimeout(resolve, 400));
      mark(event.data.batch, "end");
      return "worked";
    });
  },
);

const idempotent = inngest.createFunction(
  { id: "idempotent", triggers: [{ event: "compat/idempotent" }], idempotency: "event.data.key" },
  async ({ event }) => String(event.data.key),
);

const batched = inngest.createFunction(
  {
    id: "batched",
    triggers: [{ event: "compat/batch" }],
    batchEvents: { maxSize: 3, timeout: "5s" },
  },
  async ({ event, events }) => ({
    ns: events.map((e) => e.data.n).sort((a, b) => a - b),
    first: event.data.n,
  }),
);

const throttled = inngest.createFunction(
  { id: "throttled", triggers: [{ event: "compat/throttle" }], throttle: { limit: 1, period: "2s" } },
  async ({ event, step }) => {
    await step.run("start", () => mark(event.data.batch, "throttled-start"));
    return "ok";
  },
);

const rateLimited = inngest.createFunction(
  {
    id: "rate-limited",
    triggers: [{ event: "compat/rate-limit" }],
    rateLimit: { limit: 1, period: "1m", key: "event.data.key" },
  },
  async () => "ran",
);

const singleton = inngest.createFunction(
  {
    id: "singleton",
    triggers: [{ event: "compat/singleton" }],
    singleton: { mode: "skip", key: "event.data.key" },
  },
  async ({ step }) => {
    await step.sleep("hold", "2s");
    return "held";
  },
);

const timed = inngest.createFunction(
  { id: "timed", triggers: [{ event: "compat/timed" }], timeouts: { finish: "1s" } },
  async ({ step, runId }) => {
    await step.run("before", () => mark(runId, "before"));
    await step.sleep("too-long", "20s");
    await step.run("after", () => mark(runId, "after"));
    return "finished";
  },
);

const prioritized = inngest.createFunction(
  { id: "prioritized", triggers: [{ event: "compat/priority" }], priority: { run: "event.data.boost" } },
  async ({ event }) => Number(event.data.boost),
);

// -- JS only: waitForEvent with `match`, and group.parallel in race mode --------------------
const waiterMatch = inngest.createFunction(
  { id: "waiter-match", triggers: [{ event: "compat/wait-match" }] },
  async ({ step }) => {
    const reply = await step.waitForEvent("wait-match", {
      event: "compat/reply",
      match: "data.id",
      timeout: "30s",
    });
    return { matched: reply ? reply.data : null };
  },
);

const race = inngest.createFunction(
  { id: "race", triggers: [{ event: "compat/race" }] },
  async ({ step, group, runId }) => {
    const winner = await group.parallel({ mode: "race" }, () =>
      Promise.race([
        step.run("fast", () => {
          mark(runId, "fast");
          return "fast";
        }),
        step.run("slow", async () => {
          mark(runId, "slow");
          await new Promise((resolve) => setTimeout(resolve, 1500));
          return "slow";
        }),
      ]),
    );
    const after = await step.run("after-race", () => `${winner} won`);
    return { winner, after };
  },
);

const handler = serve({
  client: inngest,
  functions: [
    steps, sleeper, waiter, adder, invoker, parallel, parallelMixed, fanout, fanTarget,
    retryAfter, nonRetriable, doomed, cancellable, bigState, fragile, slow, invokeErrors,
    flakyFn, sleepUntil, debounced, serial, idempotent, batched, throttled, rateLimited,
    singleton, timed, prioritized, waiterMatch, race,
  ],
});

// Note what each call request carried, then replay the same bytes to the SDK's handler.
function noteCall(body) {
  try {
    const parsed = JSON.parse(body);
    const ctx = parsed.ctx || {};
    const useApi = `${JSON.stringify(parsed.use_api)}/${JSON.stringify(ctx.use_api)}`;
    mark(String(ctx.run_id), `call:use_api=${useApi}:fn_id=${ctx.fn_id ? "set" : "unset"}`);
  } catch {
    // not a call request (a sync, or not JSON): nothing to note
  }
}

const server = http.createServer((req, res) => {
  if (!req.url.startsWith("/api/inngest")) {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found");
    return;
  }
  if (req.method !== "POST") {
    handler(req, res);
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    noteCall(body.toString("utf8"));
    const replay = Readable.from([body]);
    Object.assign(replay, {
      headers: req.headers, method: req.method, url: req.url, socket: req.socket,
    });
    handler(replay, res);
  });
});

server.listen(PORT, "127.0.0.1", () => {
  console.log(`compat-js app listening on http://127.0.0.1:${PORT}/api/inngest`);
});
