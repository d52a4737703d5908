# The operator image: a static binary on distroless, running as non-root.
#   docker build -t petset/petset-operator:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p petset-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/petset-operator /petset-operator
USER 65532:65532
ENTRYPOINT ["/petset-operator"]
CMD ["run"]
