// Against a live imagesvc: IMAGESVC_ADDRESS (host:port) and IMAGESVC_TEST_REFERENCE, an
// image in a registry and not on the daemon yet, with IMAGESVC_TEST_DIGEST its digest.
// tests/integration/clients/test_typescript.py sets them up and runs `npm test`.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Code,
  ConnectError,
  createImageClient,
  listAllImages,
  pullImage,
  type TransferProgress,
} from "../src/index.js";

function environment(name: string): string {
  const value = process.env[name];
  assert.ok(value, `set ${name}`);
  return value;
}

test("lists images, pulls one while reading its progress, and inspects it", async () => {
  const client = createImageClient(environment("IMAGESVC_ADDRESS"));
  const reference = environment("IMAGESVC_TEST_REFERENCE");
  const digest = environment("IMAGESVC_TEST_DIGEST");

  const before = [];
  for await (const image of listAllImages(client, { pageSize: 1 })) before.push(image);
  assert.ok(before.length >= 1, "the session's images are listed");
  assert.ok(!before.some((image) => image.repoTags.includes(reference)), "not pulled yet");

  const progress: TransferProgress[] = [];
  const result = await pullImage(client, { reference }, (message) => progress.push(message));

  assert.match(result.imageId, /^sha256:[0-9a-f]{64}$/);
  assert.equal(result.digest, digest);
  assert.equal(result.reference, reference);
  const layerStates = new Set(progress.flatMap((message) => message.layers.map((l) => l.state)));
  assert.ok(layerStates.has("Downloading"), `states seen: ${[...layerStates].join(", ")}`);
  const last = progress[progress.length - 1];
  assert.ok(last.layersTotal > 0);
  assert.equal(last.layersDone, last.layersTotal);
  assert.equal(last.bytesDone, last.bytesTotal); // int64 fields are bigints

  const { image } = await client.getImage({ image: reference });
  assert.ok(image);
  assert.equal(image.id, result.imageId);
  assert.ok(image.repoTags.includes(reference));
  assert.ok(image.repoDigests.includes(`${reference.slice(0, reference.lastIndexOf(":"))}@${digest}`));
  assert.ok(image.size > 0n);
  assert.equal(JSON.parse(image.inspectJson).Id, result.imageId);

  const after = [];
  for await (const listed of listAllImages(client, { filter: { references: [reference] } })) {
    after.push(listed.id);
  }
  assert.deepEqual(after, [result.imageId]);

  await assert.rejects(
    client.getImage({ image: "imagesvc-test/absent:1" }),
    (error: unknown) => error instanceof ConnectError && error.code === Code.NotFound,
  );
});
