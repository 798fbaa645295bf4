# syntax=docker/dockerfile:1
#
# lifeboat's example image: the lifeboat binary and a tiny SQLite app (examples/app.ts), started as
# `lifeboat watch -- example-app`: restore at start, a backup every interval, one more on SIGTERM.
#
#   docker build -t lifeboat-example .             # fly deploy builds the same file
#   docker build --target lifeboat -t lifeboat .   # only the binary, for COPY --from in other images
#
# The published image (ghcr.io/OWNER/lifeboat:VERSION) is the `release` stage, built by
# .github/workflows/release.yml from the release's own tested binaries, not compiled here.
#
# The build pulls Deno's runtime for `deno compile` and the npm packages: it needs the network.
# For fly.io (x86_64) build with --platform linux/amd64 on an arm64 laptop.

# ---- build: the project's pinned Deno compiles lifeboat and the example app ----
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
# Dependencies first: this layer stays cached until deno.json or deno.lock change.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY main.ts ./
COPY src ./src
COPY examples ./examples
# Exactly `deno task compile`'s flags (explicit --allow-* flags; tests/deploy_test.ts keeps them equal).
RUN deno compile -q --allow-read --allow-write --allow-net --allow-env --allow-run --allow-sys --include src/snapshot/worker.ts -o /lifeboat main.ts
# The example app with its own, smaller permissions (those of `deno task example`).
RUN deno compile -q --allow-read --allow-write --allow-net=0.0.0.0,127.0.0.1 --allow-env=PORT,HOST,LIFEBOAT_DB,DB_PATH -o /example-app examples/app.ts

# ---- only the binary: `COPY --from=lifeboat /lifeboat /usr/local/bin/lifeboat` elsewhere ----
FROM scratch AS lifeboat
COPY --from=build /lifeboat /lifeboat

# ---- the published image: the release's binaries, one per platform (release.yml) ----
#   docker buildx build --platform linux/amd64,linux/arm64 --target release \
#     --build-context binaries=dist/image .    # dist/image/amd64/lifeboat, dist/image/arm64/lifeboat
# distroless/cc (glibc, libgcc, no shell) so that `docker run IMAGE list` works; other images take
# the binary with `COPY --from=ghcr.io/OWNER/lifeboat:VERSION /lifeboat /usr/local/bin/lifeboat`.
FROM gcr.io/distroless/cc-debian12 AS release
ARG TARGETARCH
COPY --from=binaries --chmod=0755 ${TARGETARCH}/lifeboat /lifeboat
ENTRYPOINT ["/lifeboat"]

# ---- the example app image ----
# distroless/cc: glibc and libgcc, which compiled Deno binaries need, and little else (no shell).
# It runs as root, as fly.io machines do by default: fly's init writes /.fly/oidc_token (the
# AWS_ROLE_ARN credentials) as root. Pin a digest (cc-debian12@sha256:…) for reproducible builds.
FROM gcr.io/distroless/cc-debian12 AS example
COPY --from=build /lifeboat /usr/local/bin/lifeboat
COPY --from=build /example-app /usr/local/bin/example-app
ENV LIFEBOAT_DB=/data/db.sqlite3 \
    PORT=8080
EXPOSE 8080 9091
# lifeboat is PID 1: it restores first (the app never starts if that fails), runs the app as its
# child, forwards SIGTERM/SIGINT to it, and makes the final backup once it has exited.
ENTRYPOINT ["/usr/local/bin/lifeboat", "watch", "--"]
CMD ["/usr/local/bin/example-app"]
