// The web chat (web/: a static page over the OpenAI-compatible API), compiled into pad_server by
// cmake/embed_files.cmake and served at / by the HTTP server.
#ifndef PAD_SERVER_WEB_CHAT_H_
#define PAD_SERVER_WEB_CHAT_H_

#include <string_view>
#include <vector>

#include "server/http_server.h"

namespace pad::server {

struct WebAsset {
  const char* path;  // "/index.html"
  const char* content_type;
  std::string_view body;
};

// The files of web/, generated at build time.
const std::vector<WebAsset>& WebAssets();

// GET (and HEAD) / (index.html) and every asset by its path. The page loads nothing from elsewhere, which
// its Content-Security-Policy enforces.
HttpRoutes WebChatRoutes();

}  // namespace pad::server

#endif  // PAD_SERVER_WEB_CHAT_H_
