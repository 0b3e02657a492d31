; Inno Setup 6 script: a per-user or all-users installer for the PyInstaller bundle in dist\guidance-studio.
;
;   pyinstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\guidance-studio.spec
;   iscc /DAppVersion=0.1.0 packaging\windows\guidance-studio.iss
;
; (packaging/build.sh does both from Git Bash.) Output: dist\guidance-studio-<version>-setup.exe.
; Not built in CI: written for and checked against the Inno Setup 6 documentation.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Guidance Studio"
#define AppExe "guidance-studio.exe"
; Paths below are relative to this script's folder, packaging\windows.
#define Repo "..\.."

[Setup]
; A fixed id keeps upgrades and uninstall working across versions; never change it.
AppId={{6E0B7A5C-3D1F-4A8E-9C2B-5F4E8D7A1B63}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Guidance Studio developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Ask whether to install for everyone (needs admin) or only the current user.
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Repo}\dist
OutputBaseFilename=guidance-studio-{#AppVersion}-setup
SetupIconFile={#Repo}\resources\icons\app.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole one-folder bundle: the executable and its _internal folder (Python, torch, Qt, resources).
Source: "{#Repo}\dist\guidance-studio\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
