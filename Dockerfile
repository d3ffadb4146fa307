# Build a small image that runs `cpis serve` as a non-root user.
#   docker build -t cpis .
#   docker run -p 8080:8080 -v cpis-data:/data cpis
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cpis ./cmd/cpis \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cpis /usr/local/bin/cpis
COPY --from=build --chown=65532:65532 /out/data /data
ENV CPIS_DATA_DIR=/data \
    CPIS_ADDR=:8080
EXPOSE 8080
VOLUME ["/data"]
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cpis"]
CMD ["serve"]
