// A small layer over the generated ImageService client: a gRPC (HTTP/2) transport with
// TLS options and an optional bearer token, every page of ListImages, pulls/pushes that
// report progress and resolve to their result, WatchImages as plain events, and the
// server's error details (reason).
import {
  Code,
  ConnectError,
  createClient,
  type CallOptions,
  type Client,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { Image, TransferProgress } from "./gen/imagesvc/v1/image_pb.js";
import {
  ChangeType,
  ImageService,
  type ListImagesRequest,
  type WatchImagesRequest,
  type WatchImagesResponse,
  type PullImageRequest,
  type PullImageResult,
  type PushImageRequest,
  type PushImageResult,
  type ExportImagesRequest,
  type ImportImagesResult,
} from "./gen/imagesvc/v1/image_service_pb.js";
import {
  FleetService,
  type NodePull,
  type PullImageOnNodesRequest,
  type PullImageOnNodesSummary,
} from "./gen/imagesvc/v1/fleet_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";

export * from "./gen/imagesvc/v1/image_pb.js";
export * from "./gen/imagesvc/v1/image_service_pb.js";
export * from "./gen/imagesvc/v1/fleet_service_pb.js";
export { ErrorInfoSchema, RetryInfoSchema };
export { Code, ConnectError };

export type ImageServiceClient = Client<typeof ImageService>;
export type FleetServiceClient = Client<typeof FleetService>;

export interface ImageClientOptions {
  /** Sent as `authorization: Bearer <token>` with every call ("" sends none). */
  token?: string;
  /** Connect with TLS (https) instead of plaintext HTTP/2; implied by the options below. */
  tls?: boolean;
  /** CA certificates (PEM) the server's certificate must chain to, instead of the system's. */
  ca?: string | Buffer;
  /** Client certificate (PEM) and its private key, for a server demanding mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name the server's certificate must hold, when it differs from the address's host. */
  serverName?: string;
}

/** A client of imagesvc at `address` ("host:port"). */
export function createImageClient(
  address: string,
  options: ImageClientOptions = {},
): ImageServiceClient {
  return createClient(ImageService, grpcTransport(address, options));
}

/** A client of the fleet (FleetService: ListNodes, FindImage, PullImageOnNodes with the
 * `fleet` role; RemoveImageOnNodes, PruneImagesOnNodes with `admin`) at `address`, with
 * the same options. */
export function createFleetClient(
  address: string,
  options: ImageClientOptions = {},
): FleetServiceClient {
  return createClient(FleetService, grpcTransport(address, options));
}

function grpcTransport(address: string, options: ImageClientOptions) {
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  const { ca, cert, key, serverName } = options;
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("cert and key go together");
  }
  const tls = options.tls || [ca, cert, key, serverName].some((value) => value !== undefined);
  return createGrpcTransport({
    baseUrl: `${tls ? "https" : "http"}://${address}`,
    interceptors,
    nodeOptions: tls ? { ca, cert, key, servername: serverName } : {},
  });
}

/** What the server said about a failed call: `reason` ("IMAGE_NOT_FOUND",
 * "CALLER_UNAUTHENTICATED", ...) and `metadata` come from the google.rpc.ErrorInfo in the
 * grpc-status-details-bin trailer ("" and {} when there is none, e.g. a connection that
 * failed); `retryDelayMs` from a google.rpc.RetryInfo, when the server asks to back off. */
export interface ErrorDetails {
  code: Code;
  message: string;
  reason: string;
  domain: string;
  metadata: Record<string, string>;
  retryDelayMs?: number;
}

/** The details of any error a call threw (a ConnectError, or anything else as Unknown). */
export function errorDetails(error: unknown): ErrorDetails {
  const failure = ConnectError.from(error);
  const [info] = failure.findDetails(ErrorInfoSchema);
  const [retry] = failure.findDetails(RetryInfoSchema);
  const delay = retry?.retryDelay;
  return {
    code: failure.code,
    message: failure.rawMessage,
    reason: info?.reason ?? "",
    domain: info?.domain ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    ...(delay ? { retryDelayMs: Number(delay.seconds) * 1000 + delay.nanos / 1e6 } : {}),
  };
}

type Init<T> = T extends { $typeName: string } ? MessageInitShape<GenMessage<T>> : never;

/** Every image matching the request, newest first, fetching page after page. */
export async function* listAllImages(
  client: ImageServiceClient,
  request: Init<ListImagesRequest> = {},
): AsyncGenerator<Image> {
  let pageToken = "";
  do {
    const page = await client.listImages({ ...request, pageToken });
    yield* page.images;
    pageToken = page.nextPageToken;
  } while (pageToken);
}

/** Pulls an image, calling `onProgress` for each progress message; resolves to the result.
 * `options.signal` (an AbortSignal) cancels it, which stops the work on the daemon too. */
export async function pullImage(
  client: ImageServiceClient,
  request: Init<PullImageRequest>,
  onProgress?: (progress: TransferProgress) => void,
  options?: CallOptions,
): Promise<PullImageResult> {
  let result: PullImageResult | undefined;
  for await (const message of client.pullImage(request, options)) {
    if (message.kind.case === "progress") onProgress?.(message.kind.value);
    else if (message.kind.case === "result") result = message.kind.value;
  }
  if (!result) throw new ConnectError("the pull stream ended without a result", Code.Internal);
  return result;
}

/** Pulls an image on every node of the fleet (or `request.nodes`), calling `onNode` for
 * each node's update (phase, bytes, percent, attempt); resolves to the summary (succeeded,
 * skipped, failed with reasons, cancelled). `options.signal` cancels every node's pull. */
export async function pullImageOnNodes(
  client: FleetServiceClient,
  request: Init<PullImageOnNodesRequest>,
  onNode?: (node: NodePull) => void,
  options?: CallOptions,
): Promise<PullImageOnNodesSummary> {
  let summary: PullImageOnNodesSummary | undefined;
  for await (const message of client.pullImageOnNodes(request, options)) {
    if (message.kind.case === "node") onNode?.(message.kind.value);
    else if (message.kind.case === "summary") summary = message.kind.value;
  }
  if (!summary) {
    throw new ConnectError("the fleet pull stream ended without a summary", Code.Internal);
  }
  return summary;
}

/** Pushes an image, calling `onProgress` for each progress message; resolves to the result.
 * `options.signal` (an AbortSignal) cancels it, which stops the work on the daemon too. */
export async function pushImage(
  client: ImageServiceClient,
  request: Init<PushImageRequest>,
  onProgress?: (progress: TransferProgress) => void,
  options?: CallOptions,
): Promise<PushImageResult> {
  let result: PushImageResult | undefined;
  for await (const message of client.pushImage(request, options)) {
    if (message.kind.case === "progress") onProgress?.(message.kind.value);
    else if (message.kind.case === "result") result = message.kind.value;
  }
  if (!result) throw new ConnectError("the push stream ended without a result", Code.Internal);
  return result;
}

/** Exports images as one tar archive (`docker save`), writing each chunk to `sink` as
 * it arrives (e.g. `(chunk) => file.write(chunk)`; a returned promise is awaited, which
 * holds the stream: flow control then holds the server and the daemon). Resolves to the
 * bytes written. `options.signal` (an AbortSignal) cancels it, which stops the daemon's
 * export too. An image not found rejects with Code.NotFound before any byte. */
export async function exportImages(
  client: ImageServiceClient,
  request: Init<ExportImagesRequest>,
  sink: (chunk: Uint8Array) => void | Promise<void>,
  options?: CallOptions,
): Promise<number> {
  let written = 0;
  for await (const message of client.exportImages(request, options)) {
    await sink(message.data);
    written += message.data.length;
  }
  return written;
}

/** Loads the images of an archive (`docker save` or OCI layout tar, plain or gzip), like
 * `docker load`: `archive` is any (async) iterable of byte chunks, e.g.
 * `fs.createReadStream(path)`, sent as it is read. Calls `onLog` for each progress line;
 * resolves to the loaded images (ids and tags). */
export async function importImages(
  client: ImageServiceClient,
  archive: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  onLog?: (line: string) => void,
  options?: CallOptions,
): Promise<ImportImagesResult> {
  async function* requests() {
    for await (const chunk of archive) yield { archiveChunk: chunk };
  }
  let result: ImportImagesResult | undefined;
  for await (const message of client.importImages(requests(), options)) {
    if (message.kind.case === "log") onLog?.(message.kind.value);
    else if (message.kind.case === "result") result = message.kind.value;
  }
  if (!result) throw new ConnectError("the import stream ended without a result", Code.Internal);
  return result;
}

/** One message of a WatchImages stream: an image `added`, `updated` or `deleted` (for a
 * filtered watch: started matching, changed, stopped matching), or `live`, the marker
 * after the initial images. `resumeToken` is where the stream stands after it ("" on the
 * initial images): pass it as `resumeToken` to a new watch to get every later change. */
export type WatchEvent =
  | { type: "added" | "updated" | "deleted"; image: Image; resumeToken: string }
  | { type: "live"; resumeToken: string };

const CHANGE_NAMES = {
  [ChangeType.ADDED]: "added",
  [ChangeType.UPDATED]: "updated",
  [ChangeType.DELETED]: "deleted",
} as const;

/** Watches images (WatchImages): with `sendInitialImages` every matching image first, then
 * the `live` marker, then each change until `options.signal` aborts or the caller stops
 * iterating (either ends the call). A token the server
 * cannot resume from rejects with Code.FailedPrecondition and reason "WATCH_EXPIRED"
 * (`errorDetails`): list the images again and start anew. */
export async function* watchImages(
  client: ImageServiceClient,
  request: Init<WatchImagesRequest> = {},
  options?: CallOptions,
): AsyncGenerator<WatchEvent> {
  // Ends the call however iteration stops (a `break` too), not only on the caller's signal.
  const ending = new AbortController();
  const stop = () => ending.abort(options?.signal?.reason);
  if (options?.signal?.aborted) stop();
  options?.signal?.addEventListener("abort", stop, { once: true });
  try {
    yield* watchEvents(client.watchImages(request, { ...options, signal: ending.signal }));
  } finally {
    options?.signal?.removeEventListener("abort", stop);
    ending.abort();
  }
}

async function* watchEvents(
  messages: AsyncIterable<WatchImagesResponse>,
): AsyncGenerator<WatchEvent> {
  for await (const message of messages) {
    const resumeToken = message.resumeToken;
    if (message.event.case === "live") {
      yield { type: "live", resumeToken };
    } else if (message.event.case === "change") {
      const { type, image } = message.event.value;
      if (type === ChangeType.UNSPECIFIED || !image) {
        throw new ConnectError("the watch sent a change without a type or image", Code.Internal);
      }
      yield { type: CHANGE_NAMES[type], image, resumeToken };
    }
  }
}
