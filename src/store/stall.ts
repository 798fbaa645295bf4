/** Stall guards for downloads: a read that brings nothing for too long fails, retryably. */
import { TransientError } from "../errors.ts";

/**
 * Returns `body` as a byte stream whose reads fail (retryably) when `idleMs` pass without data:
 * a stalled download must not hang a restore. BYOB reads pass through into the reader's own
 * buffer, so memory stays flat; cancelling the result cancels `body`.
 */
export function failWhenStalled(
  body: ReadableStream<Uint8Array>,
  idleMs: number,
): ReadableStream<Uint8Array> {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream: take its chunks as they come.
  }
  const plain = byob ? undefined : body.getReader();
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 1 << 16,
    async pull(controller) {
      try {
        if (byob) {
          // The read fills the reader's own buffer (transferred), handed back as the answer.
          const request = controller.byobRequest!;
          const { value, done } = await withinIdle(byob.read(request.view as Uint8Array), idleMs);
          if (done) controller.close();
          if (value) request.respondWithNewView(value);
          return;
        }
        const { value, done } = await withinIdle(plain!.read(), idleMs);
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        // The stream errors with `err`: stop the download underneath too.
        await (byob ?? plain)!.cancel(err).catch(() => {});
        throw err;
      }
    },
    cancel: (reason) => (byob ?? plain)!.cancel(reason),
  });
}

/** Resolves with `read`, or rejects (retryably) when it takes longer than `idleMs`. */
export function withinIdle<T>(read: Promise<T>, idleMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new TransientError(
            `the download stalled: no data for ${idleMs} ms`,
            "lifeboat downloads it again; if it persists, check the network or raise " +
              "LIFEBOAT_S3_TIMEOUT",
          ),
        ),
      idleMs,
    );
  });
  return Promise.race([read, idle]).finally(() => clearTimeout(timer));
}
