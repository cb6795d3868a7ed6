// Separate compilation of Asio and Beast: their implementation is compiled here once, so the
// other translation units include only declarations (2-core builds).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
