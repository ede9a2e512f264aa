// The web page `idiff serve` answers at / (serve_page.cpp): plain HTML and JavaScript,
// compiled into the program, nothing downloaded.
#pragma once

#include <string>

namespace idiff::cli {

const std::string& serve_page_html();

}  // namespace idiff::cli
