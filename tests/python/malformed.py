"""Sends a malformed OTLP/gRPC request (bytes that are not a valid message)
and prints the gRPC status code name the server answered with."""
import argparse

import grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    with grpc.insecure_channel(args.endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        try:
            # Field 1, length-delimited, claiming 127 bytes that are not there.
            export(b"\x0a\x7f\x01\x02", timeout=10)
            print("OK")
        except grpc.RpcError as err:
            print(err.code().name)


if __name__ == "__main__":
    main()
