# eiplb-manager: a static Go binary on a distroless base, run as non-root
# with no capability: it dials its BGP peers (no listener unless
# --bgp-listen-port asks for one), and TCP MD5 and BFD (UDP 3784) need no
# privilege.
#
#   docker build -f build/manager.Dockerfile -t eiplb-manager .   (or: make images-docker)
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/eiplb/eiplb/pkg/version.Version=${VERSION}" -o /out/eiplb-manager ./cmd/manager

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eiplb-manager /eiplb-manager
USER 65532:65532
ENTRYPOINT ["/eiplb-manager"]
