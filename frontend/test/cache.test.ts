import { test } from "node:test";
import assert from "node:assert/strict";
import { ByteCache } from "../src/cache";

test("the cache evicts least recently used entries beyond its byte budget", () => {
  const c = new ByteCache<string>(10, (v) => v.length);
  c.put("a", "aaaa");
  c.put("b", "bbbb");
  c.peek("a");
  c.put("c", "cccc");
  assert.ok(c.has("a"));
  assert.ok(!c.has("b"));
  assert.ok(c.has("c"));
  assert.equal(c.bytes, 8);
});

test("concurrent gets share one load, and failures are not cached", async () => {
  const c = new ByteCache<number>(100, () => 1);
  let calls = 0;
  const load = () => new Promise<number>((r) => { calls++; setTimeout(() => r(7), 5); });
  const [x, y] = await Promise.all([c.get("k", load), c.get("k", load)]);
  assert.equal(x + y, 14);
  assert.equal(calls, 1);
  await assert.rejects(c.get("bad", () => Promise.reject(new Error("no"))));
  assert.ok(!c.has("bad"));
  assert.equal(c.pendingCount, 0);
});
