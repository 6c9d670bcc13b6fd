# eiplb-agent: a static Go binary on a distroless base. It programs nftables
# through netlink, so it runs as root with CAP_NET_ADMIN only (the DaemonSet
# drops every other capability and mounts the root filesystem read-only);
# it needs no nft binary.
#
#   docker build -f build/agent.Dockerfile -t eiplb-agent .   (or: make images-docker)
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/eiplb/eiplb/pkg/version.Version=${VERSION}" -o /out/eiplb-agent ./cmd/agent

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/eiplb-agent /eiplb-agent
ENTRYPOINT ["/eiplb-agent"]
