# Provenance: the git commit is re-read at every build (not only at configure time), and the
# generated source is rewritten only when it changes, so an unchanged tree relinks nothing.
set(KVSCOPE_VERSION_CPP "${CMAKE_BINARY_DIR}/generated/version_info.cpp")
add_custom_target(kvscope_version_info
  COMMAND ${CMAKE_COMMAND}
    -DSOURCE_DIR=${CMAKE_SOURCE_DIR}
    -DOUTPUT=${KVSCOPE_VERSION_CPP}
    -DTEMPLATE=${CMAKE_SOURCE_DIR}/cmake/version_info.cpp.in
    -DKVSCOPE_VERSION=${PROJECT_VERSION}
    -P ${CMAKE_SOURCE_DIR}/cmake/WriteVersionInfo.cmake
  BYPRODUCTS ${KVSCOPE_VERSION_CPP}
  COMMENT "Recording git commit")
