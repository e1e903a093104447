// WatchImages against a server whose image index the Python test drives
// (tests/unit/clients/test_typescript_watch.py): IMAGESVC_WATCH_ADDRESS (host:port) holds
// one image, sha256:…01 tagged "app:1"; once this test watches, the driver adds image 2
// ("app:2") and then deletes image 1. IMAGESVC_FOREIGN_TOKEN is a token of another server.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Code,
  createImageClient,
  errorDetails,
  watchImages,
  type WatchEvent,
} from "../src/index.js";

function environment(name: string): string {
  const value = process.env[name];
  assert.ok(value, `set ${name}`);
  return value;
}

const id = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;

function summary(event: WatchEvent): string {
  return event.type === "live" ? "live" : `${event.type} ${event.image.id}`;
}

async function take(events: AsyncGenerator<WatchEvent>, count: number): Promise<WatchEvent[]> {
  const got: WatchEvent[] = [];
  for await (const event of events) {
    got.push(event);
    if (got.length === count) break;
  }
  return got;
}

test("watches the initial images, the live marker, changes, and resumes", async () => {
  const client = createImageClient(environment("IMAGESVC_WATCH_ADDRESS"));
  const first = await take(
    watchImages(client, { filter: { references: ["app"] }, sendInitialImages: true }),
    4,
  );
  assert.deepEqual(first.map(summary), [
    `added ${id(1)}`,
    "live",
    `added ${id(2)}`,
    `deleted ${id(1)}`,
  ]);
  assert.equal(first[0].resumeToken, "");
  const [added, live] = first;
  assert.ok(added.type === "added");
  assert.deepEqual(added.image.repoTags, ["app:1"]);
  assert.ok(live.resumeToken);

  // From the marker's token: the same two changes again. Leaving the loop ends the call.
  const resumed = await take(watchImages(client, { resumeToken: live.resumeToken }), 3);
  assert.deepEqual(resumed.map(summary), ["live", `added ${id(2)}`, `deleted ${id(1)}`]);
  assert.equal(resumed[2].resumeToken, first[3].resumeToken);

  await assert.rejects(
    take(watchImages(client, { resumeToken: environment("IMAGESVC_FOREIGN_TOKEN") }), 1),
    (error: unknown) => {
      const details = errorDetails(error);
      assert.equal(details.code, Code.FailedPrecondition);
      assert.equal(details.reason, "WATCH_EXPIRED");
      return true;
    },
  );
});
