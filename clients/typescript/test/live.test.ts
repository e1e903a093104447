// Against a live imagesvc: IMAGESVC_ADDRESS (host:port) and IMAGESVC_TEST_REFERENCE, an
// image in a registry and not on the daemon yet, with IMAGESVC_TEST_DIGEST its digest;
// IMAGESVC_TEST_SLOW_REFERENCE, an image behind a throttled registry (a pull to abort);
// and a server with TLS, mutual TLS and tokens: IMAGESVC_TLS_ADDRESS, IMAGESVC_TLS_CA,
// IMAGESVC_TLS_CERT, IMAGESVC_TLS_KEY (PEM files), IMAGESVC_TLS_TOKEN (admin) and
// IMAGESVC_TLS_VIEWER_TOKEN. tests/integration/clients/test_typescript.py sets them up
// and runs `npm test`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  Code,
  ConnectError,
  createFleetClient,
  createImageClient,
  errorDetails,
  exportImages,
  listAllImages,
  type NodePull,
  NodePullPhase,
  NodeImage_Drift,
  pullImage,
  pullImageOnNodes,
  type TransferProgress,
  UpdateStatus,
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

  // Asked at the registry without pulling (docker manifest inspect).
  const atRegistry = await client.inspectRegistryImage({ reference });
  assert.equal(atRegistry.digest, digest);
  assert.ok(atRegistry.sizeBytes > 0n);

  const progress: TransferProgress[] = [];
  const result = await pullImage(client, { reference }, (message) => progress.push(message));
  const { updates } = await client.checkImageUpdates({ references: [reference] });
  assert.equal(updates.length, 1);
  assert.equal(updates[0].status, UpdateStatus.UP_TO_DATE);
  assert.equal(updates[0].registryDigest, digest);
  // The drift report: this node holds what the registry serves now.
  const fleet = createFleetClient(environment("IMAGESVC_ADDRESS"));
  const drift = await fleet.findImage({ image: reference, checkRegistry: true });
  assert.equal(drift.registryDigest, digest);
  assert.deepEqual(
    drift.nodes.map((node) => node.drift),
    [NodeImage_Drift.CURRENT],
  );

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
    (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      const details = errorDetails(error);
      assert.equal(details.code, Code.NotFound);
      assert.equal(details.reason, "IMAGE_NOT_FOUND");
      assert.match(details.message, /imagesvc-test\/absent:1/);
      return true;
    },
  );
  await assert.rejects(client.getImage({ image: "UPPER/Case" }), (error: unknown) => {
    assert.equal(errorDetails(error).code, Code.InvalidArgument);
    assert.equal(errorDetails(error).reason, "INVALID_REFERENCE");
    return true;
  });
});

test("exports an image as a tar archive, shows disk usage; an unknown image is NotFound", async () => {
  const client = createImageClient(environment("IMAGESVC_ADDRESS"));
  let tag = "";
  for await (const image of listAllImages(client)) {
    if (image.repoTags.length) {
      tag = image.repoTags[0];
      break;
    }
  }
  assert.ok(tag, "a tagged image to export");
  const chunks: Uint8Array[] = [];
  const written = await exportImages(client, { images: [tag] }, (chunk) => {
    chunks.push(chunk);
  });
  const archive = Buffer.concat(chunks);
  assert.equal(archive.length, written);
  assert.equal(archive.subarray(257, 262).toString(), "ustar", "a tar archive");
  assert.ok(archive.includes(Buffer.from("manifest.json")), "docker load's manifest");

  const usage = await client.getDiskUsage({});
  assert.ok(usage.imageCount >= 1);
  assert.ok(usage.totalSizeBytes !== undefined && usage.totalSizeBytes > 0n, "layers counted");
  assert.ok(usage.images.some((image) => image.repoTags.includes(tag)));

  await assert.rejects(
    exportImages(client, { images: ["imagesvc-test/absent-export:1"] }, () => {}),
    (error: unknown) => error instanceof ConnectError && error.code === Code.NotFound,
  );
});

test("aborting a pull ends it with Canceled", async () => {
  const client = createImageClient(environment("IMAGESVC_ADDRESS"));
  const abort = new AbortController();
  const states: string[] = [];
  await assert.rejects(
    pullImage(
      client,
      { reference: environment("IMAGESVC_TEST_SLOW_REFERENCE") },
      (progress) => {
        states.push(...progress.layers.map((layer) => layer.state));
        if (states.includes("Downloading")) abort.abort();
      },
      { signal: abort.signal },
    ),
    (error: unknown) => {
      assert.equal(errorDetails(error).code, Code.Canceled);
      return true;
    },
  );
  assert.ok(states.includes("Downloading"));
  // The caller (pytest) then checks that the daemon stopped pulling.
});

test("TLS, a client certificate and tokens; refusals say why", async () => {
  const address = environment("IMAGESVC_TLS_ADDRESS");
  const tls = {
    ca: readFileSync(environment("IMAGESVC_TLS_CA")),
    cert: readFileSync(environment("IMAGESVC_TLS_CERT")),
    key: readFileSync(environment("IMAGESVC_TLS_KEY")),
  };
  const admin = createImageClient(address, { ...tls, token: environment("IMAGESVC_TLS_TOKEN") });
  const listed = [];
  for await (const image of listAllImages(admin)) listed.push(image.id);
  assert.ok(listed.length >= 1);

  // serverName: the certificate is checked for that name instead of the address's host
  // (the address stays the one the server listens on: Node.js 18 tries ::1 first for
  // "localhost", where this server does not listen).
  const named = createImageClient(address, {
    ...tls,
    serverName: "imagesvc.test",
    token: environment("IMAGESVC_TLS_VIEWER_TOKEN"),
  });
  const { images } = await named.listImages({ pageSize: 1 });
  assert.equal(images.length, 1);
  await assert.rejects(named.removeImage({ image: images[0].id }), (error: unknown) => {
    const details = errorDetails(error);
    assert.equal(details.code, Code.PermissionDenied);
    assert.equal(details.reason, "CALLER_PERMISSION_DENIED");
    return true;
  });

  // A name the certificate does not hold is refused, though it holds the address.
  const misnamed = createImageClient(address, { ...tls, serverName: "elsewhere.test" });
  await assert.rejects(misnamed.listImages({}), (error: unknown) => {
    assert.match(errorDetails(error).message, /elsewhere\.test/);
    return true;
  });

  const wrongToken = createImageClient(address, { ...tls, token: "not-a-token" });
  await assert.rejects(wrongToken.listImages({}), (error: unknown) => {
    const details = errorDetails(error);
    assert.equal(details.code, Code.Unauthenticated);
    assert.equal(details.reason, "CALLER_UNAUTHENTICATED");
    assert.ok(!details.message.includes("not-a-token"));
    return true;
  });

  // Without the CA the server's certificate is not trusted: the connection fails (Node's
  // verification error, which connect-node reports as Internal), and no reason is sent.
  const untrusted = createImageClient(address, { cert: tls.cert, key: tls.key });
  await assert.rejects(untrusted.listImages({}), (error: unknown) => {
    const details = errorDetails(error);
    assert.match(details.message, /certificate/);
    assert.equal(details.reason, "");
    return true;
  });
  assert.throws(() => createImageClient(address, { cert: tls.cert }), TypeError);
});

test("pulls on every node of the fleet (a fleet of one here), reading each node's updates", async () => {
  const fleet = createFleetClient(environment("IMAGESVC_ADDRESS"));
  const reference = environment("IMAGESVC_TEST_REFERENCE");
  const digest = environment("IMAGESVC_TEST_DIGEST");
  const updates: NodePull[] = [];
  const summary = await pullImageOnNodes(fleet, { reference }, (node) => updates.push(node));
  assert.equal(summary.desired, 1);
  assert.equal(summary.complete, true);
  const [done] = [...summary.succeeded, ...summary.skipped];
  assert.ok(done, "the node pulled it or already held it");
  assert.equal(done.digest, digest);
  assert.equal(done.percent, 100);
  assert.equal(updates[0].phase, NodePullPhase.WAITING);
  await assert.rejects(
    pullImageOnNodes(fleet, { reference, parallelism: "150%" }),
    (error: unknown) => {
      assert.ok(error instanceof ConnectError);
      assert.equal(error.code, Code.InvalidArgument);
      return true;
    },
  );
});
