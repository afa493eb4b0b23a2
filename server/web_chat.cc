#include "server/web_chat.h"

#include <string>

namespace pad::server {

HttpRoutes WebChatRoutes() {
  return [](httplib::Server& server) {
    for (const WebAsset& asset : WebAssets()) {
      const httplib::Server::Handler serve = [&asset](const httplib::Request&, httplib::Response& response) {
        response.set_header("Cache-Control", "no-cache");
        response.set_header("X-Content-Type-Options", "nosniff");
        // Scripts may set styles through the CSSOM (the token view's colours) without 'unsafe-inline'.
        response.set_header("Content-Security-Policy", "default-src 'self'");
        response.set_content(asset.body.data(), asset.body.size(), asset.content_type);
      };
      server.Get(asset.path, serve);
      if (std::string(asset.path) == "/index.html") server.Get("/", serve);
    }
  };
}

}  // namespace pad::server
