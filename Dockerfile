# syntax=docker/dockerfile:1
# One image for every process: api, workers, the dev CLI and the dev Stripe simulator.
#   docker build -t hipaa-billing .
#   docker run --rm hipaa-billing node dist/cli/main.js --help

# ---- build: compile the field-encryption addon and the TypeScript ----
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmongocrypt-dev python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# mongodb-client-encryption 6.0.0 is compiled against Debian's libmongocrypt (1.7.2), exactly as
# in CI, instead of downloading a prebuilt binary; the runtime stage then needs only libmongocrypt0.
ENV BUILD_TYPE=dynamic \
    CXXFLAGS=-fpermissive \
    npm_config_build_from_source=mongodb-client-encryption \
    npm_config_nodedir=/usr/local
# patches/: fixes to dependencies that npm ci applies (patch-package, the postinstall script).
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund \
 && node -e "require('mongodb-client-encryption')"
COPY . .
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime ----
FROM node:20-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmongocrypt0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The fonts embedded in invoices (documents/fonts.ts finds them beside dist/).
COPY --from=build /app/documents/fonts ./documents/fonts
# Where the development (local KMS) master key is created on first start; docker-compose mounts
# a named volume here so every process uses the same key. Production uses a real KMS instead.
RUN mkdir -p /app/.secrets && chown node:node /app/.secrets && chmod 700 /app/.secrets
# NODE_ENV is deliberately not set: production must opt in (and then refuses development defaults).
USER node
EXPOSE 3000
CMD ["node", "dist/server/main.js"]
