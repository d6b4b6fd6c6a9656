#!/usr/bin/env bash
# Regenerates src/gen/ from proto/*.proto with protoc and ts-proto (grpc-js services).
# Needs protoc (Debian: protobuf-compiler) and google/protobuf/struct.proto (Debian: libprotobuf-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "gen: protoc not found; install it with: apt-get install -y protobuf-compiler libprotobuf-dev" >&2; exit 1; }
rm -rf src/gen && mkdir -p src/gen
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out=src/gen \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,forceLong=number,useOptionals=messages,oneof=unions-value,env=node \
  -I proto -I /usr/include \
  proto/extension.proto proto/options.proto proto/compute_driver.proto
# The APIs the local Substrate serves (ateapi, and our local_admin) also carry their descriptors
# (`protoMetadata.fileDescriptor`, outputSchema=true; the ts-proto-descriptors import is type-only): the server's
# strict decoding (src/local/server.ts) reads the known field numbers of every message from them. This run comes
# after the one above because both write google/protobuf/timestamp.ts, and ateapi.ts imports the schema from it.
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out=src/gen \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,forceLong=number,useOptionals=messages,oneof=unions-value,env=node,outputSchema=true \
  -I proto -I /usr/include \
  proto/ateapi.proto proto/local_admin.proto
# The 0.0.x contract shares package and method paths with v0.1: its own run, its own directory.
mkdir -p src/gen/v0
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out=src/gen/v0 \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,forceLong=number,useOptionals=messages,oneof=unions-value,env=node \
  -I proto/v0 -I /usr/include \
  proto/v0/compute_driver.proto
echo "gen: wrote $(find src/gen -name '*.ts' | wc -l) files under src/gen"
