# pad_server for NVIDIA GPU nodes (deploy/overlays/gpu): the weights come from a volume at /models, the
# driver from the node (the NVIDIA container toolkit), the CUDA libraries from the torch wheel.
#   docker build -f docker/cuda.Dockerfile -t pad-server:0.1.0-cuda .
#   docker run --gpus all -v /path/to/models:/models:ro -p 50051:50051 -p 9090:9090 pad-server:0.1.0-cuda \
#     --policy=/models/Meta-Llama-3-8B-Instruct --reward_models=pad-prm=:/models/pad-prm-lora
# The build stage is the README's setup (./scripts/setup.sh); the runtime stage keeps only what pad_server
# loads.
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates sudo
WORKDIR /src
COPY . .
ENV PAD_HOME=/opt/pad
RUN ./scripts/setup.sh

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libpcre2-8-0 libcpp-httplib0.11 libssl3 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin pad
# LibTorch and the CUDA libraries it loads, in the wheel's layout so that their RUNPATHs resolve.
COPY --from=build /opt/pad/venv/lib/python3.11/site-packages/torch/lib /opt/pad/site-packages/torch/lib
COPY --from=build /opt/pad/venv/lib/python3.11/site-packages/nvidia /opt/pad/site-packages/nvidia
COPY --from=build /src/build/server/pad_server /src/build/client/pad_client /usr/local/bin/
ENV LD_LIBRARY_PATH=/opt/pad/site-packages/torch/lib \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=2s --start-period=300s CMD ["curl", "-fsS", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/pad_server", "--device=cuda", "--dtype=bfloat16", "--listen=0.0.0.0:50051", \
            "--http_listen=0.0.0.0:9090"]
