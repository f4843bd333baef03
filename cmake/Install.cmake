# Install the library, headers, the CLI, and an exported CMake package so that
# another project can find_package(longattn) and link longattn::longattn.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS longattn EXPORT longattnTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/longattn DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT longattnTargets NAMESPACE longattn::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/longattn)
configure_package_config_file(cmake/longattnConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/longattnConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/longattn)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/longattnConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/longattnConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/longattnConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/longattn)
