// Separate compilation of Asio for SDK programs (BOOST_ASIO_SEPARATE_COMPILATION is set on
// them): its implementation is compiled once, here.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
