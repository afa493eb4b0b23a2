# pad_server for CPU nodes, with SmolLM2-135M-Instruct and its demo PRM inside (deploy/overlays/cpu).
#   docker build -f docker/cpu.Dockerfile -t pad-server:0.1.0-cpu .
# The build stage is the README's setup (./scripts/setup.sh: Debian packages, the venv whose torch wheel
# provides LibTorch, the build, the model conversion); the runtime stage keeps only what pad_server loads.
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
# pad_server links the torch wheel's LibTorch, which loads the CUDA libraries beside it (unused on a CPU
# node); keep the wheel's layout so that the RUNPATHs inside them resolve.
COPY --from=build /opt/pad/venv/lib/python3.11/site-packages/torch/lib /opt/pad/site-packages/torch/lib
COPY --from=build /opt/pad/venv/lib/python3.11/site-packages/nvidia /opt/pad/site-packages/nvidia
COPY --from=build /src/build/server/pad_server /src/build/client/pad_client /usr/local/bin/
COPY --from=build /src/models/SmolLM2-135M-Instruct /opt/pad/models/SmolLM2-135M-Instruct
COPY prm/SmolLM2-135M-PAD-broad /opt/pad/prm/SmolLM2-135M-PAD-broad
COPY prm/SmolLM2-135M-PAD-demo /opt/pad/prm/SmolLM2-135M-PAD-demo
# GOMP_SPINCOUNT: libgomp's idle threads spin briefly, then sleep, so that they do not take the cores from
# other processes on the node (bench/RESULTS.md, "Idle servers and servers sharing the machine").
ENV LD_LIBRARY_PATH=/opt/pad/site-packages/torch/lib OMP_NUM_THREADS=2 GOMP_SPINCOUNT=3000
USER 10001
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=2s --start-period=60s CMD ["curl", "-fsS", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/pad_server"]
CMD ["--policy=/opt/pad/models/SmolLM2-135M-Instruct", \
     "--reward_models=smollm2-broad=:/opt/pad/prm/SmolLM2-135M-PAD-broad,smollm2-demo=:/opt/pad/prm/SmolLM2-135M-PAD-demo,identity", \
     "--listen=0.0.0.0:50051", "--http_listen=0.0.0.0:9090"]
