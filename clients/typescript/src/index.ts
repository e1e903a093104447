// A small layer over the generated ImageService client: a gRPC (HTTP/2) transport with an
// optional bearer token, every page of ListImages, and pulls/pushes that report progress
// and resolve to their result.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Image, TransferProgress } from "./gen/imagesvc/v1/image_pb.js";
import {
  ImageService,
  type ListImagesRequest,
  type PullImageRequest,
  type PullImageResult,
  type PushImageRequest,
  type PushImageResult,
} from "./gen/imagesvc/v1/image_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";

export * from "./gen/imagesvc/v1/image_pb.js";
export * from "./gen/imagesvc/v1/image_service_pb.js";
export { Code, ConnectError };

export type ImageServiceClient = Client<typeof ImageService>;

export interface ImageClientOptions {
  /** Sent as `authorization: Bearer <token>` with every call. */
  token?: string;
  /** Connect with TLS (https) instead of plaintext HTTP/2. */
  tls?: boolean;
}

/** A client of imagesvc at `address` ("host:port"). */
export function createImageClient(
  address: string,
  options: ImageClientOptions = {},
): ImageServiceClient {
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  const transport = createGrpcTransport({
    baseUrl: `${options.tls ? "https" : "http"}://${address}`,
    interceptors,
  });
  return createClient(ImageService, transport);
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

/** Pulls an image, calling `onProgress` for each progress message; resolves to the result. */
export async function pullImage(
  client: ImageServiceClient,
  request: Init<PullImageRequest>,
  onProgress?: (progress: TransferProgress) => void,
): Promise<PullImageResult> {
  let result: PullImageResult | undefined;
  for await (const message of client.pullImage(request)) {
    if (message.kind.case === "progress") onProgress?.(message.kind.value);
    else if (message.kind.case === "result") result = message.kind.value;
  }
  if (!result) throw new ConnectError("the pull stream ended without a result", Code.Internal);
  return result;
}

/** Pushes an image, calling `onProgress` for each progress message; resolves to the result. */
export async function pushImage(
  client: ImageServiceClient,
  request: Init<PushImageRequest>,
  onProgress?: (progress: TransferProgress) => void,
): Promise<PushImageResult> {
  let result: PushImageResult | undefined;
  for await (const message of client.pushImage(request)) {
    if (message.kind.case === "progress") onProgress?.(message.kind.value);
    else if (message.kind.case === "result") result = message.kind.value;
  }
  if (!result) throw new ConnectError("the push stream ended without a result", Code.Internal);
  return result;
}
