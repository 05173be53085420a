// What the Botan check tools (botan_svid_check, botan_crl_check) share: reading every
// certificate of a PEM file, and the one-line failure they print.
#pragma once

#include <botan/data_src.h>
#include <botan/x509cert.h>

#include <iostream>
#include <string>
#include <vector>

namespace meshid::botan_tool {

inline std::vector<Botan::X509_Certificate> LoadAll(const std::string& path) {
  std::vector<Botan::X509_Certificate> certs;
  Botan::DataSource_Stream in(path);
  while (!in.end_of_data()) {
    try {
      certs.emplace_back(in);
    } catch (const Botan::Exception&) {
      break;  // trailing whitespace after the last certificate
    }
  }
  return certs;
}

// Prints "FAIL <why>" and returns the exit code 1.
inline int Fail(const std::string& why) {
  std::cout << "FAIL " << why << std::endl;
  return 1;
}

}  // namespace meshid::botan_tool
